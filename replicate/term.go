package replicate

import (
	"context"
	"fmt"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/storage"
)

// TermBinder is implemented by a Store whose writes can be bound to a
// term of leadership: the bound Store refuses every write once the term's
// lease has ended, even before a successor has written anything, which
// fencing alone cannot do (etcdstore.Store binds to etcdlease's terms).
// Stream.RunTerm binds the Stream's Store this way when it can.
type TermBinder interface {
	storage.Store
	// ForTerm returns the Store bound to term, or an error if term is
	// not one this Store can bind to (a term of another elector).
	ForTerm(term lease.Term) (storage.Store, error)
}

// RunTerm is Run under term's token, for ha.Node's work
// (ha.Config{Work: stream.RunTerm}). If the Stream's Store is a
// TermBinder, the Run's checkpoint writes go through the Store bound to
// term, so that they fail once the term's lease is gone; a Store that
// cannot bind term is an error, returned before anything is read or
// written. ctx should end when term's Done closes (ha.Node does that).
func (s *Stream) RunTerm(ctx context.Context, term lease.Term) error {
	cfg, err := s.config()
	if err != nil {
		return err
	}
	if tb, ok := cfg.store.(TermBinder); ok {
		bound, err := tb.ForTerm(term)
		if err != nil {
			return fmt.Errorf("replicate: stream %q: bind the store to term %d: %w", s.Key, term.Token(), err)
		}
		cfg.store = bound
	}
	return s.run(ctx, cfg, term.Token())
}
