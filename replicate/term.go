package replicate

import (
	"context"
	"fmt"

	"github.com/hakit/hakit/lease"
)

// RunTerm is Run under term's token, for ha.Node's work
// (ha.Config{Work: stream.RunTerm}). If the Stream's Store is a
// lease.TermBinder (etcdstore.Store is), the Run's checkpoint writes go
// through the Store bound to term, so that they fail once the term's lease
// is gone; a Store that cannot bind term is an error, returned before
// anything is read or written. ctx should end when term's Done closes
// (ha.Node does that).
func (s *Stream) RunTerm(ctx context.Context, term lease.Term) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	if tb, ok := cfg.store.(lease.TermBinder); ok {
		bound, err := tb.ForTerm(term)
		if err != nil {
			return fmt.Errorf("replicate: stream %q: bind the store to term %d: %w", s.Key, term.Token(), err)
		}
		cfg.store = bound
	}
	return s.run(ctx, cfg, term.Token())
}
