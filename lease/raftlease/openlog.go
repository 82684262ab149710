package raftlease

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hakit/hakit/lease/raftlease/raftlog"
)

// openLog opens the durable log in dir. A torn tail (a crash during a
// write that had not returned) is cut off by raftlog and reported here;
// any other damage is an error naming the file and offset.
func openLog(dir string, log *slog.Logger) (logStore, error) {
	l, err := raftlog.Open(dir, raftlog.WithLogger(log))
	if err != nil {
		if errors.Is(err, raftlog.ErrCorrupt) {
			return nil, fmt.Errorf("raftlease: open log in %s: %w: %w", dir, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("raftlease: open log in %s: %w", dir, err)
	}
	if rec := l.Recovered(); rec.Torn != nil {
		log.Warn("raftlease: cut off a torn write at the end of the log", "torn", fmt.Sprintf("%+v", *rec.Torn))
	}
	return l, nil
}
