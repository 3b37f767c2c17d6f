package admission

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// Admission results, the values of flowauth_admission_requests_total's result label.
const (
	resultSkipped   = "skipped"    // not a pod CREATE
	resultPassed    = "passed"     // not a flow run
	resultNotServed = "not_served" // a namespace outside --namespace-selector: not from the API server
	resultUnchanged = "unchanged"  // flow run that needed nothing (e.g. a reinvocation)
	resultMutated   = "mutated"
	resultOptedOut  = "opted_out" // flow run with flowauth.io/inject: "false"
	resultDenied    = "denied"
	resultError     = "error"
)

// customLabel stands for every declared name outside the secret map, so a user's annotation can
// never grow the metric's label set without bound.
const customLabel = "custom"

// Metrics are flowauth's Prometheus metrics. A nil *Metrics records nothing. Labels carry
// declared names and reasons only: never a Secret name chosen by a user, never a value.
type Metrics struct {
	requests   *prometheus.CounterVec
	injections *prometheus.CounterVec
	warnings   *prometheus.CounterVec
	denials    *prometheus.CounterVec
	templates  *prometheus.CounterVec
	confirms   *prometheus.CounterVec
	events     *prometheus.CounterVec
	nsReads    *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_admission_requests_total",
			Help: "Pod admission requests by result: skipped (not a pod CREATE), passed (not a flow run), unchanged, mutated, opted_out (flowauth.io/inject: \"false\"), denied, error.",
		}, []string{"result"}),
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_injections_total",
			Help: "Declared secret names served per admitted flow-run pod, by name (\"custom\" for names outside the secret map) and result (injected).",
		}, []string{"secret", "result"}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_warnings_total",
			Help: "Admission warnings returned, by reason.",
		}, []string{"reason"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_denials_total",
			Help: "Reasons of denied flow-run pods.",
		}, []string{"reason"}),
		templates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_template_checks_total",
			Help: "Pod templates of Jobs and CronJobs checked at apply time, by kind and result: passed (not a flow run), unchanged (an update that left the template as it was, or an object being deleted: never refused), not_served (a namespace outside --namespace-selector), allowed, warned, denied, error.",
		}, []string{"kind", "result"}),
		confirms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_key_cache_confirmations_total",
			Help: "Live reads of a Secret or ConfigMap the key cache lacked, before calling it missing, by kind and result: found (the cache was behind, or the object is outside its selectors), not_found, error (the cache's answer stood), throttled (not read: the pod's namespace had spent its pace, or the pod its 8 reads; the cache's answer stood).",
		}, []string{"kind", "result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_events_total",
			Help: "Kubernetes Events of warnings and denials, by result: recorded, paced (not recorded: the namespace's pace or the total was spent; the answer and the log still say it), invalid_reference (not recorded: the object it would regard has a name, namespace or UID the API server would refuse).",
		}, []string{"result"}),
		nsReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flowauth_namespace_reads_total",
			Help: "Reads of a Namespace from the API server that the cache lacked or held stale (created, labelled or given defaults a moment ago), by result: read, or throttled (not read: the namespace's pace, or the small budget shared by namespaces not served or unknown, was spent; the cache's answer stood).",
		}, []string{"result"}),
	}
	m.requests = MustRegisterOnce(reg, m.requests)
	m.injections = MustRegisterOnce(reg, m.injections)
	m.warnings = MustRegisterOnce(reg, m.warnings)
	m.denials = MustRegisterOnce(reg, m.denials)
	m.templates = MustRegisterOnce(reg, m.templates)
	m.confirms = MustRegisterOnce(reg, m.confirms)
	m.events = MustRegisterOnce(reg, m.events)
	m.nsReads = MustRegisterOnce(reg, m.nsReads)
	m.nsReads.WithLabelValues("read")
	m.nsReads.WithLabelValues("throttled")
	for _, r := range []string{eventRecorded, eventPaced, eventInvalidReference} {
		m.events.WithLabelValues(r)
	}
	// Each result and denial reason starts at 0, so an alert's rate or increase sees a replica's
	// first ones too: a series that appears with its first count already in it adds nothing to
	// an increase (FlowauthDenialsRising missed a burst of six on a fresh replica).
	for _, r := range []string{resultSkipped, resultPassed, resultNotServed, resultUnchanged, resultMutated, resultOptedOut, resultDenied, resultError} {
		m.requests.WithLabelValues(r)
	}
	for _, r := range mutate.Reasons {
		m.denials.WithLabelValues(string(r))
	}
	for _, kind := range []string{"Job", "CronJob"} {
		m.templates.WithLabelValues(kind, resultError)
	}
	return m
}

// MustRegisterOnce registers c, or returns the collector already registered under the same
// descriptor, so a server started twice in one process (tests do) shares its metrics.
func MustRegisterOnce[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *Metrics) admission(result string) {
	if m != nil {
		m.requests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) confirmation(kind string, found bool, err error) {
	if m == nil {
		return
	}
	result := "not_found"
	switch {
	case err != nil:
		result = "error"
	case found:
		result = "found"
	}
	m.confirms.WithLabelValues(kind, result).Inc()
}

// confirmationThrottled counts a read not made: the namespace's pace was spent.
func (m *Metrics) confirmationThrottled(kind string) {
	if m != nil {
		m.confirms.WithLabelValues(kind, "throttled").Inc()
	}
}

func (m *Metrics) namespaceRead(read bool) {
	if m == nil {
		return
	}
	if read {
		m.nsReads.WithLabelValues("read").Inc()
	} else {
		m.nsReads.WithLabelValues("throttled").Inc()
	}
}

func (m *Metrics) event(result string) {
	if m != nil {
		m.events.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) template(kind, result string) {
	if m != nil {
		m.templates.WithLabelValues(kind, result).Inc()
	}
}

// findings counts warnings and denials, and, for pods (not templates), the names injected.
func (m *Metrics) findings(r mutate.Result, sm *secretmap.Map, pod bool) {
	if m == nil {
		return
	}
	for _, w := range r.Warnings {
		m.warnings.WithLabelValues(string(w.Reason)).Inc()
	}
	for _, d := range r.Denials {
		m.denials.WithLabelValues(string(d.Reason)).Inc()
	}
	if r.Denied() || !pod {
		return
	}
	for _, name := range r.Injected {
		m.injections.WithLabelValues(secretLabel(name, sm), "injected").Inc()
	}
}

func secretLabel(name string, sm *secretmap.Map) string {
	if _, ok := sm.Lookup(name); ok {
		return name
	}
	return customLabel
}
