package pgsink_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"sync/atomic"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgsink"
)

type timedSink struct {
	*pgsink.Sink
	ns, n atomic.Int64
}

func (s *timedSink) ApplyAt(ctx context.Context, t fence.Token, from replicate.Position, b []replicate.Record) error {
	st := time.Now()
	err := s.Sink.ApplyAt(ctx, t, from, b)
	s.ns.Add(int64(time.Since(st)))
	s.n.Add(1)
	return err
}

// serverCPU sums the CPU time (user+system, in clock ticks of 10ms) of
// every process whose command line mentions dir (a server's processes).
func serverCPU(dir string) time.Duration {
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + pid + "/stat")
		if len(stat) == 0 {
			continue
		}
		// Children of the postmaster have short command lines: match the
		// postmaster's data dir, then its children by parent PID.
		_ = cmd
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) < 13 {
			continue
		}
		if !belongs(pid, dir) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// belongs reports whether pid is the postmaster of dir or its child.
func belongs(pid, dir string) bool {
	for range 2 {
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		if strings.Contains(string(cmd), dir) {
			return true
		}
		stat, _ := os.ReadFile("/proc/" + pid + "/stat")
		if len(stat) == 0 {
			return false
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		pid = f[1]
	}
	return false
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
