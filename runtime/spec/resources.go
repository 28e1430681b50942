package spec

import (
	"fmt"
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func (g *generator) setResources(s *specs.Spec) error {
	o := g.o
	r := s.Linux.Resources
	if r == nil {
		r = &specs.LinuxResources{}
		s.Linux.Resources = r
	}

	// Memory, with docker's checks and its default swap of twice the limit.
	switch {
	case o.Memory < 0:
		return invalidf("--memory %d must not be negative", o.Memory)
	case o.Memory > 0 && o.Memory < MinMemory:
		return invalidf("--memory %s is below the minimum of 6MiB", bytesString(o.Memory))
	case o.MemoryReservation < 0:
		return invalidf("--memory-reservation %d must not be negative", o.MemoryReservation)
	case o.MemoryReservation > 0 && o.MemoryReservation < MinMemory:
		return invalidf("--memory-reservation %s is below the minimum of 6MiB", bytesString(o.MemoryReservation))
	case o.Memory > 0 && o.MemoryReservation > o.Memory:
		return invalidf("--memory-reservation %s is above --memory %s", bytesString(o.MemoryReservation), bytesString(o.Memory))
	case o.MemorySwap < -1:
		return invalidf("--memory-swap %d must be -1 (unlimited) or a size", o.MemorySwap)
	case o.MemorySwap > 0 && o.Memory == 0:
		return invalidf("--memory-swap needs --memory")
	case o.MemorySwap > 0 && o.MemorySwap < o.Memory:
		return invalidf("--memory-swap %s is below --memory %s (it counts memory plus swap)", bytesString(o.MemorySwap), bytesString(o.Memory))
	}
	if o.Memory > 0 || o.MemoryReservation > 0 {
		m := &specs.LinuxMemory{}
		if o.Memory > 0 {
			m.Limit = ptr(o.Memory)
			swap := o.MemorySwap
			if swap == 0 {
				swap = o.Memory * 2
				if swap < o.Memory { // overflow
					swap = -1
				}
			}
			if !o.NoSwapLimit {
				m.Swap = ptr(swap)
			}
		}
		if o.MemoryReservation > 0 {
			m.Reservation = ptr(o.MemoryReservation)
		}
		r.Memory = m
	}

	// CPU: a quota of CPUs periods, as docker's --cpus; and shares.
	if o.CPUs != 0 || o.CPUShares != 0 {
		c := &specs.LinuxCPU{}
		if o.CPUs != 0 {
			if math.IsNaN(o.CPUs) || math.IsInf(o.CPUs, 0) || o.CPUs < 0 {
				return invalidf("--cpus %v must be > 0", o.CPUs)
			}
			if n := g.h.numCPU; n > 0 && o.CPUs > float64(n) {
				return invalidf("--cpus %v is above the %d CPUs available", o.CPUs, n)
			}
			if o.CPUs > 1<<20 {
				return invalidf("--cpus %v is too large", o.CPUs)
			}
			nano := int64(math.Round(o.CPUs * 1e9))
			quota := nano * CPUPeriod / 1e9
			if quota < 1000 {
				return invalidf("--cpus %v is below the minimum of 0.01", o.CPUs)
			}
			c.Quota = ptr(quota)
			c.Period = ptr(uint64(CPUPeriod))
		}
		if o.CPUShares != 0 {
			if o.CPUShares < minCPUShares || o.CPUShares > maxCPUShares {
				return invalidf("--cpu-shares %d is out of the range %d-%d", o.CPUShares, minCPUShares, maxCPUShares)
			}
			c.Shares = ptr(o.CPUShares)
		}
		r.CPU = c
	}

	switch {
	case o.PidsLimit < -1:
		return invalidf("--pids-limit %d must be positive, or 0 or -1 for unlimited", o.PidsLimit)
	case o.PidsLimit > 0:
		r.Pids = &specs.LinuxPids{Limit: ptr(o.PidsLimit)}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// bytesString writes a byte count in docker's binary units (6MiB, 512MiB).
func bytesString(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i := 0
	for n >= 1024 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%d%s", n, units[i])
}
