package admission

import (
	"fmt"

	"github.com/flowauth/flowauth/pkg/mutate"
	"github.com/flowauth/flowauth/pkg/secretkeys"
	"github.com/flowauth/flowauth/pkg/secretmap"
)

// Webhook-wide pacing of flowauth's own API requests (cmd/webhook sets its client and live reads
// with these; they are here so that Bounds can name them).
const (
	// ClientQPS and ClientBurst pace all of flowauth's API requests.
	ClientQPS, ClientBurst = 50, 100
	// ConfirmationsPerNamespace and ConfirmationsBurst pace each namespace's live reads of what the
	// key cache lacks, so that no namespace can take the whole client: at most 20 a second each, in
	// bursts of up to 40, so that a burst of flow runs in one namespace (a mapped deployment starting
	// 20 at once, each with a Secret the watch has not delivered) is still confirmed, and two
	// namespaces at their pace still leave a fifth of the client to the others.
	ConfirmationsPerNamespace, ConfirmationsBurst = 20, 40
)

// Bound is one limit on what a request can make flowauth do.
type Bound struct {
	What, Limit, Past string
}

// Bounds are every limit a tenant's pod, Job or Secret meets, for docs/configuration.md's table
// (test/docs keeps the page equal to this list): the other pages link there instead of restating
// the numbers. Each is a constant the code uses; secretLookupMaxKeyBytes is the chart's default.
var Bounds = []Bound{
	{"names in one declaration (`flowauth.io/secrets`, or the namespace's defaults)", fmt.Sprint(mutate.MaxDeclaredNames), "refused (`InvalidSecretName`)"},
	{"entries in a namespace's `flowauth.io/allowed-secrets`", fmt.Sprint(mutate.MaxDeclaredNames), "only the first are read, with a warning (`InvalidAllowList`)"},
	{"a declared name", fmt.Sprintf("%d characters", secretmap.MaxNameLength), "refused (`InvalidSecretName`)"},
	{"containers of a flow-run pod, init containers included", fmt.Sprint(mutate.MaxContainers), "refused (`TooManyContainers`)"},
	{"entries in `flowauth.io/containers` or `flowauth.io/skip-containers`", fmt.Sprint(mutate.MaxListedContainers), "refused (`TooManyContainers`)"},
	{"env vars of one container", fmt.Sprint(mutate.MaxEnv), "refused (`TooManyItems`)"},
	{"envFrom sources of one container", fmt.Sprint(mutate.MaxEnvFrom), "refused (`TooManyItems`)"},
	{"volume mounts of one container", fmt.Sprint(mutate.MaxVolumeMounts), "refused (`TooManyItems`)"},
	{"volumes of a pod", fmt.Sprint(mutate.MaxVolumes), "refused (`TooManyItems`)"},
	{"the JSON Patch one pod gets (declared names times containers)", kib(mutate.MaxPatchBytes), "refused (`InjectionTooLarge`)"},
	{"envFrom sources whose keys are looked up for one pod (key lookup)", fmt.Sprint(mutate.MaxEnvFromSources), "the rest named in one warning (`EnvFromNotChecked`)"},
	{"one warning in the answer", kib(maxWarning), "cut"},
	{"all warnings of one answer", kib(maxWarnings), "one last warning says how many were left out"},
	{"Events one admission records", fmt.Sprint(maxEvents), "not recorded; still in the answer and the log"},
	{"Events of one namespace", fmt.Sprintf("%d a second, bursts of %d", eventsPerNamespace, eventsBurst), "not recorded, counted (`flowauth_events_total{result=\"paced\"}`)"},
	{"Events in all", fmt.Sprintf("%d a second, bursts of %d", eventsTotal, eventsTotalBurst), "not recorded, counted (`flowauth_events_total{result=\"paced\"}`)"},
	{"reviews over " + kib(pooledBufferSize) + " handled at once", mib(largeReviewBytes) + " of them", "wait (small reviews never do)"},
	{"a string from the request (a name, a namespace, a UID) in a log line", fmt.Sprintf("%d bytes", maxLogged), "cut"},
	{"live reads of what the key cache lacks, for one pod", fmt.Sprint(MaxConfirmations), "the cache's answer stands, as a warning (`Unconfirmed`)"},
	{"live reads of one namespace (key cache, namespaces held stale)", fmt.Sprintf("%d a second, bursts of %d", ConfirmationsPerNamespace, ConfirmationsBurst), "not read, counted (`result=\"throttled\"`) and said"},
	{"reads of namespaces the webhook does not serve, all together", fmt.Sprintf("%d a second, bursts of %d", unservedReads, unservedBurst), "not read, counted (`flowauth_namespace_reads_total{result=\"throttled\"}`)"},
	{"all of flowauth's API requests", fmt.Sprintf("%d a second, bursts of %d", ClientQPS, ClientBurst), "wait"},
	{"key names kept for one Secret or ConfigMap (key lookup)", kib(secretkeys.MaxKeyBytes), "kept as oversized, read live when a pod names it (`flowauth_key_cache_oversized_objects`)"},
	{"distinct key-name sets kept in all (key lookup)", "`secretLookupMaxKeyBytes` (default " + mib(secretkeys.DefaultMaxTotalKeyBytes) + ")", "further objects kept as not known (`flowauth_key_cache_over_budget_objects`)"},
}

func kib[N int | int64](n N) string { return fmt.Sprintf("%d KiB", n>>10) }
func mib[N int | int64](n N) string { return fmt.Sprintf("%d MiB", n>>20) }
