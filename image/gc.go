package image

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// GCPolicy is the automatic garbage collection policy: when the state
// root's filesystem is more than HighPercent full, unused images are removed,
// least recently used first, until it is at most LowPercent full or nothing
// removable is left.
type GCPolicy struct {
	HighPercent float64 `json:"highWatermarkPercent"`
	LowPercent  float64 `json:"lowWatermarkPercent"`
}

// DefaultGCPolicy collects above 85% and down to 75%, as kubelet does.
var DefaultGCPolicy = GCPolicy{HighPercent: 85, LowPercent: 75}

// Validate checks 0 < low < high <= 100.
func (p GCPolicy) Validate() error {
	if p.HighPercent <= 0 || p.HighPercent > 100 || p.LowPercent <= 0 || p.LowPercent >= p.HighPercent {
		return fmt.Errorf("invalid image GC watermarks high=%g%% low=%g%%: want 0 < low < high <= 100", p.HighPercent, p.LowPercent)
	}
	return nil
}

// GCReport says what a GC pass did.
type GCReport struct {
	UsedPercentBefore float64 `json:"usedPercentBefore"`
	UsedPercentAfter  float64 `json:"usedPercentAfter"`
	PruneReport
}

// GC enforces the policy once. Images inUse protects are never removed;
// names of one image (one ID) go together, since removing one name frees
// nothing while another holds the content.
func (s *Store) GC(ctx context.Context, p GCPolicy, inUse InUseFunc) (*GCReport, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	used, err := usedPercent(s.root)
	if err != nil {
		return nil, err
	}
	rep := &GCReport{UsedPercentBefore: used, UsedPercentAfter: used}
	if used <= p.HighPercent {
		return rep, nil
	}
	unlock, err := s.lockGC(ctx, true)
	if err != nil {
		return nil, err
	}
	defer unlock()

	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	// Group names by image ID; an image is as recent as its most recent name.
	type group struct {
		names []Record
		last  time.Time
		used  bool
	}
	groups := map[string]*group{}
	for i := range recs {
		r := &recs[i]
		g := groups[r.ID.Hex]
		if g == nil {
			g = &group{}
			groups[r.ID.Hex] = g
		}
		g.names = append(g.names, *r)
		t := r.LastUsed
		if t.IsZero() {
			t = r.Pulled
		}
		if t.After(g.last) {
			g.last = t
		}
		if u, _ := inUse.check(r); u {
			g.used = true
		}
	}
	var order []*group
	for _, g := range groups {
		if !g.used {
			order = append(order, g)
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i].last.Before(order[j].last) })

	keep := func(skip map[*group]bool) []Record {
		var out []Record
		for _, g := range groups {
			if !skip[g] {
				out = append(out, g.names...)
			}
		}
		return out
	}
	removed := map[*group]bool{}
	// Unreferenced content goes first: it costs nothing to lose.
	if err := s.sweep(keep(removed), &rep.PruneReport); err != nil {
		return rep, err
	}
	for _, g := range order {
		if used, err = usedPercent(s.root); err != nil {
			return rep, err
		}
		rep.UsedPercentAfter = used
		if used <= p.LowPercent || ctx.Err() != nil {
			break
		}
		for _, r := range g.names {
			if err := s.state.Delete(recordKey(r.Name)); err != nil {
				return rep, err
			}
			rep.Images = append(rep.Images, r.Name)
		}
		removed[g] = true
		if err := s.sweep(keep(removed), &rep.PruneReport); err != nil {
			return rep, err
		}
		s.log.Info("image GC removed an unused image", "names", len(g.names), "lastUsed", g.last)
	}
	if used, err = usedPercent(s.root); err == nil {
		rep.UsedPercentAfter = used
	}
	return rep, nil
}
