package admission

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

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
func recordFindings(rec EventRecorder, regarding runtime.Object, res mutate.Result, action string) {
	if rec == nil {
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
