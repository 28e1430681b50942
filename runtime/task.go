package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Task and container statuses. Known statuses only move forward:
//
//	task:      PENDING ──► RUNNING ──► STOPPING ──► STOPPED
//	container: CREATED ──► RUNNING ──► STOPPED
const (
	TaskPending  = "PENDING"
	TaskRunning  = "RUNNING"
	TaskStopping = "STOPPING"
	TaskStopped  = "STOPPED"

	ContainerCreated = "CREATED"
	ContainerRunning = "RUNNING"
	ContainerStopped = "STOPPED"
)

// Stop codes, as ECS names why a task stopped.
const (
	StopEssentialContainerExited = "EssentialContainerExited"
	StopUserInitiated            = "UserInitiated"
	StopTaskFailedToStart        = "TaskFailedToStart"
)

// Sentinel errors.
var (
	ErrNotFound   = errors.New("no such task")
	ErrExists     = errors.New("name already in use")
	ErrAmbiguous  = errors.New("ambiguous task ID prefix")
	ErrNotRunning = errors.New("task is not running")
	ErrRunning    = errors.New("task is running")
)

// Task is a task's recorded state: tasks/<id>/task.json.
type Task struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Created    time.Time         `json:"created"`
	Status     string            `json:"status"`
	StopCode   string            `json:"stopCode,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	AutoRemove bool              `json:"autoRemove,omitempty"`
	// MonitorPID is the per-task monitor's process, 0 when none runs.
	MonitorPID int          `json:"monitorPid,omitempty"`
	Containers []*Container `json:"containers"`
	// OnStop are commands run (each at most once per stop, idempotent by
	// contract) when the task stops and when it is removed: how the layer
	// above releases what it set up for the task (its network) without the
	// runtime knowing about it.
	OnStop [][]string `json:"onStop,omitempty"`
	// Ports are the published ports, as listings print them
	// ("127.0.0.1:8080->8080/tcp"); set by the layer that published them.
	Ports []string `json:"ports,omitempty"`
	// Network is what the layer above set up for the task's network,
	// recorded for listings, inspect and tasks that join this one's
	// namespace; the runtime does not interpret it.
	Network *NetworkInfo `json:"network,omitempty"`
}

// NetworkInfo describes a task's network as the layer that made it
// recorded it.
type NetworkInfo struct {
	// Mode is bridge, host, none or container:<task-id>.
	Mode string `json:"mode"`
	// NetNSPath is the network namespace the containers joined ("" for a
	// namespace of their own, or the host's).
	NetNSPath string `json:"netnsPath,omitempty"`
	// Bridge, IPAddress (with prefix length) and Gateway in bridge mode.
	Bridge    string `json:"bridge,omitempty"`
	IPAddress string `json:"ipAddress,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	// IPv6Address (with prefix length) and IPv6Gateway on a dual-stack
	// bridge.
	IPv6Address string `json:"ipv6Address,omitempty"`
	IPv6Gateway string `json:"ipv6Gateway,omitempty"`
	// DNSDir holds the task's hosts, resolv.conf and hostname files,
	// bind-mounted into its containers.
	DNSDir string `json:"dnsDir,omitempty"`
}

// Container is one container's recorded state within a task.
type Container struct {
	Name     string    `json:"name"`
	Image    string    `json:"image"`
	ImageID  string    `json:"imageId"`
	Layers   []string  `json:"layers"`
	ReadOnly bool      `json:"readOnly,omitempty"`
	Status   string    `json:"status"`
	Pid      int       `json:"pid,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// ExitCode follows docker: 128+N for a signal N; nil while running or
	// when nobody saw the exit (the monitor was killed).
	ExitCode  *int   `json:"exitCode,omitempty"`
	Signal    string `json:"signal,omitempty"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	Error     string `json:"error,omitempty"`
	// Log rotation: at most LogMaxFiles files of LogMaxSize bytes.
	LogMaxSize  int64 `json:"logMaxSize"`
	LogMaxFiles int   `json:"logMaxFiles"`
	Stdin       bool  `json:"stdin,omitempty"`
	TTY         bool  `json:"tty,omitempty"`
	// StopTimeout is how long stop waits after the stop signal before
	// SIGKILL when the caller gives no timeout (--stop-timeout); 0 = 10 s.
	StopTimeout time.Duration `json:"stopTimeout,omitempty"`
}

// Container returns the named container of the task, or nil.
func (t *Task) Container(name string) *Container {
	for _, c := range t.Containers {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// NewID returns a fresh 64-hex task ID.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// validName reports whether n matches docker's ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$,
// at most 128 characters. Not a regexp: the {0,127} bound compiles to a
// program of 128 copies, a millisecond in every process at start-up.
func validName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidateName checks a task or container name (docker's rule).
func ValidateName(n string) error {
	if !validName(n) {
		return fmt.Errorf("invalid name %q: use [a-zA-Z0-9][a-zA-Z0-9_.-], at most 128 characters", n)
	}
	if isHexPrefix(n) && len(n) == 64 {
		return fmt.Errorf("invalid name %q: a 64-hex name would shadow an ID", n)
	}
	return nil
}

func isHexPrefix(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// ExitStatus is how docker prints a stopped container's status.
func (c *Container) ExitStatus() string {
	switch c.Status {
	case ContainerCreated:
		return "Created"
	case ContainerRunning:
		return "Up " + humanDuration(time.Since(c.Started))
	}
	code := "unknown"
	if c.ExitCode != nil {
		code = fmt.Sprint(*c.ExitCode)
	}
	s := "Exited (" + code + ")"
	if c.OOMKilled {
		s += " OOMKilled"
	}
	if !c.Finished.IsZero() {
		s += " " + humanDuration(time.Since(c.Finished)) + " ago"
	}
	return s
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "Less than a second"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// DefaultStopTimeout is how long stop waits for the stop signal to work
// before SIGKILL, as docker's default.
const DefaultStopTimeout = 10 * time.Second

// stopTimeout is the longest --stop-timeout of the task's containers, or
// DefaultStopTimeout.
func (t *Task) stopTimeout() time.Duration {
	d := time.Duration(0)
	for _, c := range t.Containers {
		d = max(d, c.StopTimeout)
	}
	if d <= 0 {
		return DefaultStopTimeout
	}
	return d
}
