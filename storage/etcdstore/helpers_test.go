package etcdstore_test

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// prefixes hands out a fresh prefix per store, so that the subtests of a
// suite share one server without seeing each other's keys.
var prefixes atomic.Int64

func freshPrefix(t testing.TB) string {
	return fmt.Sprintf("test/%s/%d/", t.Name(), prefixes.Add(1))
}
