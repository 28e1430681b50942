//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-dev/berth/image"
)

// hostConfigFileName is berth's own settings file under --config-dir.
const hostConfigFileName = "berth.json"

// hostConfig is CONFIG_DIR/berth.json. Every key is optional:
//
//	{
//	  "imageGC": {"highWatermarkPercent": 85, "lowWatermarkPercent": 75},
//	  "maxLayerSize": 34359738368,
//	  "network": {"bridge": "berth0", "subnet": "10.209.0.0/16", "subnet6": "fd12:3456:789a:1::/64", "portRange": "49153-60999"}
//	}
//
// imageGC: when the state root's filesystem is fuller than the high
// watermark after a pull or load (and, later, periodically in the daemon),
// unused images are removed, least recently used first, down to the low
// watermark. "imageGC": {"disabled": true} turns it off.
// maxLayerSize: the most bytes one layer may unpack to (decompression bombs).
// network: the default bridge's name and IPv4 subnet (defaults berth0 and
// 10.209.0.0/16), its IPv6 subnet (/64 to /120; unset, the bridge is IPv4
// only; see network.Config.Subnet6), and the range dynamic host ports
// (-p CONTAINER_PORT, -P) come from.
type hostConfig struct {
	ImageGC struct {
		image.GCPolicy
		Disabled bool `json:"disabled"`
	} `json:"imageGC"`
	MaxLayerSize int64 `json:"maxLayerSize"`
	Network      struct {
		Bridge    string `json:"bridge"`
		Subnet    string `json:"subnet"`
		Subnet6   string `json:"subnet6"`
		PortRange string `json:"portRange"`
	} `json:"network"`
}

func (g *globalOptions) loadHostConfig() (*hostConfig, error) {
	c := &hostConfig{}
	c.ImageGC.GCPolicy = image.DefaultGCPolicy
	path := filepath.Join(g.configDir, hostConfigFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the JSON object", path)
	}
	if !c.ImageGC.Disabled {
		if err := c.ImageGC.Validate(); err != nil {
			return nil, fmt.Errorf("%s: imageGC: %w", path, err)
		}
	}
	if c.MaxLayerSize < 0 {
		return nil, fmt.Errorf("%s: maxLayerSize %d: must not be negative", path, c.MaxLayerSize)
	}
	return c, nil
}
