//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/berth-dev/berth/image"
)

// pullProgress renders image.Progress updates: live bars on a terminal,
// one plain line per layer change otherwise, nothing when quiet.
type pullProgress struct {
	mu     sync.Mutex
	out    io.Writer
	quiet  bool
	p      *mpb.Progress
	bars   map[string]*mpb.Bar
	total  *mpb.Bar
	totalN int64
	state  map[string]image.Phase
	cur    map[string]int64
}

func newPullProgress(out io.Writer, quiet bool) *pullProgress {
	pp := &pullProgress{out: out, quiet: quiet, bars: map[string]*mpb.Bar{}, state: map[string]image.Phase{}, cur: map[string]int64{}}
	if f, ok := out.(*os.File); ok && !quiet && term.IsTerminal(int(f.Fd())) {
		pp.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return pp
}

func short(d string) string {
	if len(d) > 7+12 {
		return d[7 : 7+12]
	}
	return d
}

// update is image.PullOptions.Progress; it is called from several goroutines.
func (pp *pullProgress) update(ev image.Progress) {
	if pp.quiet {
		return
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	id := short(ev.Digest.String())
	prev, seen := pp.state[id]
	pp.state[id] = ev.Phase
	if pp.p == nil {
		if !seen || prev != ev.Phase {
			switch ev.Phase {
			case image.PhasePulling:
				fmt.Fprintf(pp.out, "%s: pulling %s\n", id, humanSize(ev.Total))
			case image.PhaseExists:
				fmt.Fprintf(pp.out, "%s: already present\n", id)
			case image.PhaseDone:
				fmt.Fprintf(pp.out, "%s: done\n", id)
			}
		}
		return
	}
	b := pp.bars[id]
	if b == nil {
		b = pp.p.AddBar(ev.Total,
			mpb.PrependDecorators(decor.Name(id+" "), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
			mpb.AppendDecorators(decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), "done"),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_MMSS, decor.WCSyncSpace), "")),
		)
		pp.bars[id] = b
		pp.totalN += ev.Total
		if pp.total == nil {
			// Total 0 at creation: the bar completes only when finish says
			// so, not when the first layer's size is reached.
			pp.total = pp.p.AddBar(0, mpb.BarPriority(1<<30),
				mpb.PrependDecorators(decor.Name("total        "), decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
				mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace)))
		}
		pp.total.SetTotal(pp.totalN, false)
	}
	pp.cur[id] = ev.Current
	switch ev.Phase {
	case image.PhasePulling:
		b.SetCurrent(ev.Current)
	case image.PhaseExists, image.PhaseDone:
		b.SetCurrent(ev.Total)
		b.SetTotal(ev.Total, true)
	}
	var sum int64
	for _, n := range pp.cur {
		sum += n
	}
	pp.total.SetCurrent(sum)
}

// finish stops the bars; ok says whether the pull succeeded.
func (pp *pullProgress) finish(ok bool) {
	if pp.p == nil {
		return
	}
	pp.mu.Lock()
	for _, b := range pp.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	if pp.total != nil {
		if ok {
			pp.total.SetTotal(pp.totalN, true)
		} else {
			pp.total.Abort(false)
		}
	}
	pp.mu.Unlock()
	pp.p.Wait()
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.3g%cB", float64(n)/float64(div), "kMGTPE"[exp])
}
