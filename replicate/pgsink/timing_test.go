package pgsink_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgsink"
)

// timedSink measures the time spent in ApplyAt.
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

// selfCPU is the CPU time this process used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
