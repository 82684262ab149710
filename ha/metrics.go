package ha

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Node's Prometheus collectors, registered on the
// Registerer from Config and labelled with the member ID.
type metrics struct {
	role        *prometheus.GaugeVec
	token       prometheus.Gauge
	transitions *prometheus.CounterVec
	failover    prometheus.Gauge
	checks      *prometheus.CounterVec
	restarts    prometheus.Counter
	paused      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, id string, checks []Check) (*metrics, error) {
	labels := prometheus.Labels{"member": id}
	m := &metrics{
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hakit_role", Help: "1 for the role this member is in, 0 for the others.", ConstLabels: labels,
		}, []string{"role"}),
		token: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hakit_token", Help: "Fencing token of the current term, 0 when not leading.", ConstLabels: labels,
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hakit_role_transitions_total", Help: "Role changes, by the role entered.", ConstLabels: labels,
		}, []string{"role"}),
		failover: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hakit_last_takeover_seconds", ConstLabels: labels,
			Help: "Time from this member seeing no leader (or winning, if it saw none) to its work starting, at its last takeover.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hakit_check_results_total", Help: "Health check results, by check and result.", ConstLabels: labels,
		}, []string{"check", "result"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hakit_work_failures_total", Help: "Times the work returned while the term held.", ConstLabels: labels,
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hakit_paused", Help: "1 while maintenance mode is on.", ConstLabels: labels,
		}),
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.role, m.token, m.transitions, m.failover, m.checks, m.restarts, m.paused} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for r := RoleStandby; r <= RoleStopped; r++ {
		m.role.WithLabelValues(r.String())
	}
	for _, c := range checks {
		m.checks.WithLabelValues(c.Name, "pass")
		m.checks.WithLabelValues(c.Name, "fail")
	}
	return m, nil
}

func (m *metrics) observe(s Status) {
	for r := RoleStandby; r <= RoleStopped; r++ {
		v := 0.0
		if r == s.Role {
			v = 1
		}
		m.role.WithLabelValues(r.String()).Set(v)
	}
	m.token.Set(float64(s.Token))
	if s.Paused {
		m.paused.Set(1)
	} else {
		m.paused.Set(0)
	}
}

func (m *metrics) check(name string, err error) {
	result := "pass"
	if err != nil {
		result = "fail"
	}
	m.checks.WithLabelValues(name, result).Inc()
}
