package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flowauth/flowauth/pkg/mutate"
)

// recordedEvents collects Events as "Kind/name uid type reason action: note".
type recordedEvents []string

func (r *recordedEvents) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	o := regarding.(metav1.Object)
	kind := regarding.GetObjectKind().GroupVersionKind().Kind
	*r = append(*r, fmt.Sprintf("%s/%s %s %s %s %s: %s", kind, o.GetName(), o.GetUID(), eventtype, reason, action, fmt.Sprintf(note, args...)))
}

func flowRunTemplate(annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "flow", Image: "prefecthq/prefect:3"}}},
	}
}

func jobRequest(t *testing.T, op admissionv1.Operation, obj runtime.Object, kind string, dryRun bool) admission.Request {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-2", Operation: op, Namespace: "flows", DryRun: &dryRun,
		Kind:   metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: kind},
		Object: runtime.RawExtension{Raw: raw},
	}}
}

// withOld sets the request's oldObject, as the API server does for an UPDATE.
func withOld(t *testing.T, req admission.Request, old runtime.Object) admission.Request {
	t.Helper()
	raw, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	req.OldObject = runtime.RawExtension{Raw: raw}
	return req
}

func TestTemplateValidator(t *testing.T) {
	declared := map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "run-1", Namespace: "flows", UID: "5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b"}, Spec: batchv1.JobSpec{Template: flowRunTemplate(declared)}}
	cron := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "flows", UID: "6a1d2b3f-4c5e-4f60-9b0c-1d2e3f4a5b6c"},
		Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: flowRunTemplate(declared)}}}}
	plain := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "backup", Namespace: "flows"}, Spec: batchv1.JobSpec{Template: flowRunTemplate(nil)}}
	labelled := job.DeepCopy()
	labelled.Labels = map[string]string{"team": "data"}
	deleting := job.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	deleting.Finalizers = nil // the garbage collector removes foregroundDeletion
	changedCron := cron.DeepCopy()
	changedCron.Spec.JobTemplate.Spec.Template.Annotations = map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS GITHUB_ACCESS_TOKEN"}
	missing := `flowauth: namespace "flows": Secret "aws-credentials" not found; AWS_CREDENTIALS needs it (keys ACCESS_KEY, SECRET_ACCESS_KEY; optional SESSION_TOKEN). Create it: kubectl create secret generic aws-credentials -n flows --from-literal=ACCESS_KEY=<value> --from-literal=SECRET_ACCESS_KEY=<value>`

	tests := []struct {
		name        string
		req         admission.Request
		missing     mutate.MissingPolicy
		wantAllowed bool
		wantCode    int32
		wantMessage string
		warnings    []string
		events      []string
	}{
		{
			name: "job with a missing Secret warns", req: jobRequest(t, admissionv1.Create, job, "Job", false), missing: mutate.MissingWarn,
			wantAllowed: true, wantCode: http.StatusOK, warnings: []string{missing},
			events: []string{"Job/run-1 5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b Warning FlowauthSecretNotFound ValidateJob: " + strings.TrimPrefix(missing, "flowauth: ")},
		},
		{
			name: "deny mode refuses the job", req: jobRequest(t, admissionv1.Create, job, "Job", false), missing: mutate.MissingDeny,
			wantAllowed: false, wantCode: http.StatusForbidden, wantMessage: missing,
			events: []string{"Job/run-1 5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b Warning FlowauthDeniedSecretNotFound ValidateJob: " + strings.TrimPrefix(missing, "flowauth: ")},
		},
		{
			name: "cronjob update warns", req: jobRequest(t, admissionv1.Update, cron, "CronJob", false), missing: mutate.MissingWarn,
			wantAllowed: true, wantCode: http.StatusOK, warnings: []string{missing},
			events: []string{"CronJob/nightly 6a1d2b3f-4c5e-4f60-9b0c-1d2e3f4a5b6c Warning FlowauthSecretNotFound ValidateCronJob: " + strings.TrimPrefix(missing, "flowauth: ")},
		},
		{
			name: "dry run warns but records nothing", req: jobRequest(t, admissionv1.Create, job, "Job", true), missing: mutate.MissingWarn,
			wantAllowed: true, wantCode: http.StatusOK, warnings: []string{missing},
		},
		{
			name: "a job that is not a flow run passes", req: jobRequest(t, admissionv1.Create, plain, "Job", false), missing: mutate.MissingDeny,
			wantAllowed: true, wantCode: http.StatusOK,
		},
		{
			// DESIGN.md §3: an update that leaves the template alone is never refused and records
			// nothing again, so `kubectl label job` works when the Job's Secret is gone.
			name: "job update that keeps the template passes silently in deny mode", req: withOld(t, jobRequest(t, admissionv1.Update, labelled, "Job", false), job), missing: mutate.MissingDeny,
			wantAllowed: true, wantCode: http.StatusOK, wantMessage: "flowauth checks a pod template only when it changes",
		},
		{
			// The garbage collector's update that removes foregroundDeletion must pass, or the Job
			// stays Terminating.
			name: "job being deleted passes in deny mode", req: withOld(t, jobRequest(t, admissionv1.Update, deleting, "Job", false), job), missing: mutate.MissingDeny,
			wantAllowed: true, wantCode: http.StatusOK, wantMessage: "flowauth does not check an object being deleted",
		},
		{
			name: "cronjob update that changes the template is checked", req: withOld(t, jobRequest(t, admissionv1.Update, changedCron, "CronJob", false), cron), missing: mutate.MissingDeny,
			wantAllowed: false, wantCode: http.StatusForbidden,
			wantMessage: missing + `; namespace "flows": Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n flows --from-literal=token=<value>`,
			events: []string{
				"CronJob/nightly 6a1d2b3f-4c5e-4f60-9b0c-1d2e3f4a5b6c Warning FlowauthDeniedSecretNotFound ValidateCronJob: " + strings.TrimPrefix(missing, "flowauth: "),
				`CronJob/nightly 6a1d2b3f-4c5e-4f60-9b0c-1d2e3f4a5b6c Warning FlowauthDeniedSecretNotFound ValidateCronJob: namespace "flows": Secret "github-access-token" not found; GITHUB_ACCESS_TOKEN needs it (keys token). Create it: kubectl create secret generic github-access-token -n flows --from-literal=token=<value>`,
			},
		},
		{
			name: "delete is not checked", req: jobRequest(t, admissionv1.Delete, job, "Job", false), missing: mutate.MissingDeny,
			wantAllowed: true, wantCode: http.StatusOK, wantMessage: "flowauth only checks Job and CronJob pod templates",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events recordedEvents
			h := newMutator("")
			h.Keys, h.Missing, h.Events = &mutate.StaticKeys{}, tt.missing, &events
			resp := (&TemplateValidator{Pods: h}).Handle(context.Background(), tt.req)
			if resp.Allowed != tt.wantAllowed || resp.Result.Code != tt.wantCode || resp.Result.Message != tt.wantMessage {
				t.Errorf("allowed=%v code=%d message=%q\nwant allowed=%v code=%d message=%q", resp.Allowed, resp.Result.Code, resp.Result.Message, tt.wantAllowed, tt.wantCode, tt.wantMessage)
			}
			if len(resp.Patches) > 0 || resp.Patch != nil {
				t.Errorf("a validating answer carries a patch: %s", resp.Patch)
			}
			if diff := cmp.Diff(tt.warnings, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.events, []string(events)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateValidatorRejectsWhatIsNotAJob(t *testing.T) {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Operation: admissionv1.Create, Namespace: "flows",
		Kind: metav1.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}, Object: runtime.RawExtension{Raw: []byte(`{"spec":"nope"}`)},
	}}
	resp := (&TemplateValidator{Pods: newMutator("")}).Handle(context.Background(), req)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, "not a batch/v1 Job") {
		t.Errorf("got allowed=%v code=%d %q", resp.Allowed, resp.Result.Code, resp.Result.Message)
	}
}

// TestPodWarningsBecomeEventsOnItsJob: the Job controller's pod has no name or UID yet, so the
// Event goes to the Job that owns it, where `kubectl describe job` shows it.
func TestPodWarningsBecomeEventsOnItsJob(t *testing.T) {
	controller := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "run-1-", Namespace: "flows", Annotations: map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "run-1", UID: "5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b", Controller: &controller}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "flow", Image: "i"}}},
	}
	raw, _ := json.Marshal(pod)
	var events recordedEvents
	h := newMutator("")
	h.Keys, h.Events = &mutate.StaticKeys{Secrets: map[string][]string{"aws-credentials": {"ACCESS_KEY"}}}, &events
	resp := h.Handle(context.Background(), request(admissionv1.Create, raw))
	if !resp.Allowed {
		t.Fatal(resp.Result)
	}
	want := []string{`Job/run-1 5f0c1a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b Warning FlowauthSecretKeyMissing CreatePod: namespace "flows": Secret "aws-credentials" has no key "SECRET_ACCESS_KEY", which AWS_CREDENTIALS needs. Add it: kubectl patch secret aws-credentials -n flows --type=merge -p '{"stringData":{"SECRET_ACCESS_KEY":"<value>"}}'`}
	if diff := cmp.Diff(want, []string(events)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestTruncateKeepsNotesUnderTheLimit(t *testing.T) {
	long := strings.Repeat("é", 800) // 1,600 bytes
	got := truncate(long, maxNote)
	if len(got) > maxNote+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("truncate: %d bytes", len(got))
	}
	if !utf8.ValidString(got) {
		t.Error("truncate split a UTF-8 sequence")
	}
}
