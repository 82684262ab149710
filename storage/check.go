package storage

import (
	"errors"
	"fmt"
)

// ErrCorrupt is wrapped by errors for stored data that fails its integrity
// check (a bad length, magic, format version or checksum). Such data is
// never read as absent or empty.
var ErrCorrupt = errors.New("storage: corrupt data")

// CheckCommit validates the arguments of a Backend.Commit before anything
// is applied: every key in conds and ops passes ValidateKey, and no two ops
// name the same key. Backends call it first so that every backend rejects
// the same malformed commits with errors matching ErrInvalidKey.
func CheckCommit(conds []Cond, ops []Op) error {
	for _, c := range conds {
		if err := ValidateKey(c.Key); err != nil {
			return fmt.Errorf("commit condition: %w", err)
		}
	}
	for i, op := range ops {
		if err := ValidateKey(op.Key); err != nil {
			return fmt.Errorf("commit op: %w", err)
		}
		if len(ops) <= 16 { // the usual case: no allocation
			for _, prev := range ops[:i] {
				if prev.Key == op.Key {
					return fmt.Errorf("%w: commit writes key %q twice", ErrInvalidKey, op.Key)
				}
			}
		}
	}
	if len(ops) > 16 {
		seen := make(map[string]struct{}, len(ops))
		for _, op := range ops {
			if _, dup := seen[op.Key]; dup {
				return fmt.Errorf("%w: commit writes key %q twice", ErrInvalidKey, op.Key)
			}
			seen[op.Key] = struct{}{}
		}
	}
	return nil
}
