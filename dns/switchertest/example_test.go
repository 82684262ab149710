package switchertest_test

import (
	"context"
	"testing"

	"github.com/hakit/hakit/dns"
	"github.com/hakit/hakit/dns/switchertest"
	"github.com/hakit/hakit/fence"
)

// A backend's test runs the suite with one call. This one checks
// dns.Health, observing its state through Status.
func ExampleRun() {
	testHealth := func(t *testing.T) {
		switchertest.Run(t, switchertest.Harness{
			New: func(t *testing.T) switchertest.Backend {
				h := &dns.Health{}
				return switchertest.Backend{
					Switcher: func(*testing.T, string) dns.Switcher { return h },
					Observe: func(context.Context) (bool, fence.Token, error) {
						st := h.Status()
						return st.Role == dns.RoleActive, st.Token, nil
					},
				}
			},
		})
	}
	_ = testHealth // func TestHealth(t *testing.T) { testHealth(t) }
}
