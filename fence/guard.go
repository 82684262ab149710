package fence

import "sync/atomic"

// Guard admits a token if and only if no larger token was admitted before
// it. Once token T has been admitted, every later Admit of a token below T
// fails with an error that wraps ErrStale; T itself and anything above it
// keep being admitted. Admit is linearizable, so the tokens a Guard
// admits never decrease in real time: if Admit(a) returned nil before
// Admit(b) was called and Admit(b) returned nil, then b >= a. (Two calls
// that overlap in time may return in either order.)
//
// A Guard protects one resource held in one process's memory. Resources
// shared between processes keep the same rule in their own storage (see
// package storage). The zero Guard is ready to use and is safe for
// concurrent use.
type Guard struct {
	high atomic.Uint64
}

// Admit admits t and raises the guard's high-water mark to t if t is
// larger. It returns ErrNoToken for the zero token and a *StaleError
// (matching ErrStale) if a larger token was admitted before.
func (g *Guard) Admit(t Token) error {
	if t == 0 {
		return ErrNoToken
	}
	for {
		high := g.high.Load()
		if uint64(t) < high {
			return Stale(t, Token(high))
		}
		if uint64(t) == high || g.high.CompareAndSwap(high, uint64(t)) {
			return nil
		}
	}
}

// Check reports whether Admit(t) would succeed now, without admitting t.
func (g *Guard) Check(t Token) error {
	if t == 0 {
		return ErrNoToken
	}
	if high := g.high.Load(); uint64(t) < high {
		return Stale(t, Token(high))
	}
	return nil
}

// High returns the highest token admitted so far, or 0 if none was.
func (g *Guard) High() Token { return Token(g.high.Load()) }
