package admission

import (
	"github.com/google/uuid"
	"golang.org/x/time/rate"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// EventRecorder is the part of client-go's events.EventRecorder (events.k8s.io/v1, which
// aggregates repeats of one event into a series) that flowauth uses.
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...any)
}

// maxNote keeps an Event's note under the API server's 1 KiB limit.
const maxNote = 1000

// recordFindings records each warning and denial on regarding as a Warning Event, so that
// `kubectl describe` shows them where nobody saw the admission response (a Job created by a
// Prefect worker). Notes are the findings' messages: names and keys, never a value.
//
// The object an Event regards comes from the request: a pod's controller reference, a Job's own
// metadata. A mutating webhook sees a pod before the API server validates it, and a review that
// did not come from the API server can say anything, so an object whose name, namespace or UID
// the API server would refuse gets no Event (client-go's broadcaster would keep it for minutes,
// keyed by that name: megabytes each). Pacing is the recorder's (PacedEvents).
func recordFindings(rec EventRecorder, m *Metrics, regarding runtime.Object, res mutate.Result, action string) {
	if rec == nil {
		return
	}
	if o, ok := regarding.(metav1.Object); !ok || !validReference(o) {
		m.event(eventInvalidReference)
		return
	}
	recorded := 0
	record := func(reason string, f mutate.Finding) {
		if recorded < maxEvents {
			rec.Eventf(regarding, nil, corev1.EventTypeWarning, reason+string(f.Reason), action, "%s", truncate(f.Message, maxNote))
		}
		recorded++
	}
	for _, f := range res.Denials {
		record("FlowauthDenied", f)
	}
	for _, f := range res.Warnings {
		record("Flowauth", f)
	}
}

// maxEvents bounds the Events one admission records: one object's findings are few, and a
// hostile pod's many are told in its answer.
const maxEvents = 8

// truncate cuts s to at most max bytes, on a UTF-8 boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 { // do not split a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}

// validReference tells whether an object is named as the API server names the objects it
// stores: a DNS subdomain in a DNS-label namespace, with no UID or an RFC 4122 one.
func validReference(o metav1.Object) bool {
	name, namespace := o.GetName(), o.GetNamespace()
	// By length first: the validators run their regular expression over the whole string even
	// when it is too long, 150 ms for a 2.5 MB name.
	if len(name) > validation.DNS1123SubdomainMaxLength || len(namespace) > validation.DNS1123LabelMaxLength {
		return false
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 || len(validation.IsDNS1123Label(namespace)) > 0 {
		return false
	}
	if uid := string(o.GetUID()); uid != "" {
		if len(uid) != 36 { // uuid.Parse also takes the 38-byte braced and 45-byte urn: forms
			return false
		}
		if _, err := uuid.Parse(uid); err != nil {
			return false
		}
	}
	return true
}

// PacedEvents is the EventRecorder flowauth records through: each namespace's Events are paced,
// and so are all of them together, so that however many refused pods a tenant sends, what
// client-go's broadcaster keeps (each distinct Event for up to 12 minutes, with a goroutine
// waiting on the events client while it is sent) stays bounded: at most Total's rate times
// 12 minutes of Events of at most a few KiB (validated names, notes cut at maxNote). What is not
// recorded is counted (flowauth_events_total), and still told in the admission's answer and the
// log.
type PacedEvents struct {
	Recorder EventRecorder
	// Namespaces paces each namespace's Events.
	Namespaces *FairLimiter
	// Total paces all of them.
	Total   *rate.Limiter
	Metrics *Metrics
}

// Events per namespace and in all: a denied flow run records an Event or two per attempt, and
// the Job controller retries with backoff, so an honest namespace stays well under its pace;
// the total bounds the broadcaster's cache to about 12 min x 5/s = 3,600 Events.
const (
	eventsPerNamespace, eventsBurst = 1, 10
	eventsTotal, eventsTotalBurst   = 5, 50
)

// NewPacedEvents paces rec at the rates above.
func NewPacedEvents(rec EventRecorder, m *Metrics) *PacedEvents {
	return &PacedEvents{
		Recorder:   rec,
		Namespaces: &FairLimiter{PerNamespace: eventsPerNamespace, Burst: eventsBurst},
		Total:      rate.NewLimiter(eventsTotal, eventsTotalBurst),
		Metrics:    m,
	}
}

// Eventf records the Event if its namespace's pace and the total allow it. What it regards was
// validated by recordFindings, its only caller.
func (p *PacedEvents) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	namespace := ""
	if o, ok := regarding.(metav1.Object); ok {
		namespace = o.GetNamespace()
	}
	// The namespace's bucket first: a namespace past its pace must not spend the total.
	if !p.Namespaces.allow(namespace) || !p.Total.Allow() {
		p.Metrics.event(eventPaced)
		return
	}
	p.Metrics.event(eventRecorded)
	p.Recorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// The results of flowauth_events_total.
const (
	eventRecorded         = "recorded"
	eventPaced            = "paced"
	eventInvalidReference = "invalid_reference"
)

// ownerJob is the Job that controls the pod, as an object Events can refer to: the pod itself
// has no name or UID yet when the Job controller creates it.
func ownerJob(pod *corev1.Pod, namespace string) *batchv1.Job {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "Job" || ref.APIVersion != batchv1.SchemeGroupVersion.String() {
		return nil
	}
	return &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: ref.APIVersion, Kind: ref.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: namespace, UID: ref.UID},
	}
}
