package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flowauth/flowauth/test/localcluster"
)

// cases are the hostile requests: each list a pod or Job can carry, as long as the API server
// lets it be (a 3 MiB body), and the combinations that multiply work. The first two are the
// issue's findings as it measured them on the old main.
func cases() []hostileCase {
	var cs []hostileCase
	add := func(name, path string, body []byte) { cs = append(cs, hostileCase{name: name, path: path, body: body}) }
	podPath, jobPath := "/mutate-v1-pod", "/validate-batch-v1-job"
	flowRun := func(extra map[string]string) map[string]string {
		a := map[string]string{"flowauth.io/secrets": "AWS_CREDENTIALS"}
		for k, v := range extra {
			a[k] = v
		}
		return a
	}

	// 2,000 containers naming 2,000 containers the pod does not have.
	missing := names("ghost-%d", 2000)
	add("missing-containers-2000", podPath, review("CREATE", "Pod", pod(flowRun(map[string]string{"flowauth.io/containers": strings.Join(missing, ",")}), containers(2000)), nil))
	// The same with one name the pod has: each missing name was a warning listing every container.
	add("missing-containers-2000-one-present", podPath, review("CREATE", "Pod", pod(flowRun(map[string]string{"flowauth.io/containers": "c0," + strings.Join(missing, ",")}), containers(2000)), nil))
	add("skip-containers-2000", podPath, review("CREATE", "Pod", pod(flowRun(map[string]string{"flowauth.io/skip-containers": strings.Join(missing, ",")}), containers(2000)), nil))
	// The same lists with as many containers as the body holds.
	add("containers-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(nil), containers(fit(60, 0))), nil))
	add("containers-list-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(map[string]string{"flowauth.io/containers": list("c-%d", 3<<20-4096)}), containers(1)), nil))
	add("skip-list-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(map[string]string{"flowauth.io/skip-containers": list("c-%d", 3<<20-4096)}), containers(1)), nil))
	add("names-3MiB", podPath, review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": list("CUSTOM_%d", 3<<20-4096)}, containers(1)), nil))
	add("invalid-names-3MiB", podPath, review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": list("bad-%d", 3<<20-4096)}, containers(1)), nil))
	// Each override of a name that is not declared is a warning.
	overrides := flowRun(nil)
	for i := 0; len(overrides)*64 < 3<<20-8192; i++ {
		overrides[fmt.Sprintf("secret.flowauth.io/UNDECLARED_%d", i)] = fmt.Sprintf("secret-%d", i)
	}
	add("overrides-40000", podPath, review("CREATE", "Pod", pod(overrides, containers(1)), nil))
	// 64 declared names, each from a Secret of the longest name, into every one of 64 named
	// containers: the injection a patch would multiply.
	many := map[string]string{"flowauth.io/secrets": list("CUSTOM_NAME_%d", 64*16)[:0]}
	decl := names("CUSTOM_NAME_%d", 64)
	many["flowauth.io/secrets"] = strings.Join(decl, ",")
	for _, n := range decl {
		many["secret.flowauth.io/"+n] = strings.Repeat("s", 240) + fmt.Sprintf("-%d", len(n))
	}
	many["flowauth.io/containers"] = strings.Join(names("c%d", 64), ",")
	add("injection-64x64", podPath, review("CREATE", "Pod", pod(many, containers(64)), nil))
	// A refused pod named 2.5 MB: on the old main its denial's log line was 2.5 MB.
	named := pod(map[string]string{"flowauth.io/secrets": "AWS..X"}, containers(1))
	named["metadata"].(map[string]any)["name"] = strings.Repeat("p", 5<<19)
	add("pod-name-2.5MB", podPath, review("CREATE", "Pod", named, nil))
	// A container name as long as the body.
	add("container-name-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(nil), []any{map[string]any{"name": strings.Repeat("n", 3<<20-4096), "image": "i"}}), nil))
	// Env vars, envFrom sources and mounts filling the body, in the flow's container.
	env := []any{}
	for i := 0; len(env)*40 < 3<<20-8192; i++ {
		env = append(env, map[string]any{"name": fmt.Sprintf("VAR_%d", i), "value": "x"})
	}
	add("env-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(nil), []any{map[string]any{"name": "flow", "image": "i", "env": env}}), nil))
	envFrom := []any{}
	for i := 0; len(envFrom)*48 < 3<<20-8192; i++ {
		envFrom = append(envFrom, map[string]any{"configMapRef": map[string]any{"name": fmt.Sprintf("cm-%d", i)}})
	}
	add("envfrom-3MiB", podPath, review("CREATE", "Pod", pod(flowRun(nil), []any{map[string]any{"name": "flow", "image": "i", "envFrom": envFrom}}), nil))
	mounts := []any{}
	for i := 0; len(mounts)*56 < 3<<20-8192; i++ {
		mounts = append(mounts, map[string]any{"name": fmt.Sprintf("v-%d", i), "mountPath": fmt.Sprintf("/m/%d", i)})
	}
	add("mounts-3MiB", podPath, review("CREATE", "Pod", pod(map[string]string{"flowauth.io/secrets": "GCP_CREDENTIALS"}, []any{map[string]any{"name": "flow", "image": "i", "volumeMounts": mounts}}), nil))
	// Everything at its bound at once, and allowed: 64 declared names into a container with 1,024
	// env vars, 256 envFrom sources and 256 mounts, in a pod of 256 volumes and 64 containers.
	full := map[string]any{"name": "flow", "image": "i"}
	var fullEnv, fullFrom, fullMounts, fullVolumes []any
	for i := range 1024 {
		fullEnv = append(fullEnv, map[string]any{"name": fmt.Sprintf("VAR_%d", i), "value": "x"})
	}
	for i := range 256 {
		fullFrom = append(fullFrom, map[string]any{"secretRef": map[string]any{"name": fmt.Sprintf("s-%d", i)}})
		fullMounts = append(fullMounts, map[string]any{"name": fmt.Sprintf("v-%d", i), "mountPath": fmt.Sprintf("/m/%d", i)})
		fullVolumes = append(fullVolumes, map[string]any{"name": fmt.Sprintf("v-%d", i), "emptyDir": map[string]any{}})
	}
	full["env"], full["envFrom"], full["volumeMounts"] = fullEnv, fullFrom, fullMounts
	fullPod := pod(map[string]string{"flowauth.io/secrets": strings.Join(names("CUSTOM_NAME_%d", 64), ",")}, append([]any{full}, containers(63)...))
	fullPod["spec"].(map[string]any)["volumes"] = fullVolumes
	add("every-list-at-its-bound", podPath, review("CREATE", "Pod", fullPod, nil))
	// Jobs: a template of 3 MiB of annotations' lists, and an update that changes nothing.
	add("job-names-3MiB", jobPath, review("CREATE", "Job", job(map[string]string{"flowauth.io/secrets": list("CUSTOM_%d", 3<<20-4096)}, containers(1)), nil))
	add("job-containers-2000", jobPath, review("CREATE", "Job", job(flowRun(map[string]string{"flowauth.io/containers": strings.Join(missing, ",")}), containers(2000)), nil))
	half := job(flowRun(map[string]string{"flowauth.io/containers": list("c-%d", 3<<19-8192)}), containers(1))
	add("job-update-unchanged", jobPath, review("UPDATE", "Job", half, half))
	return cs
}

func names(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// list is distinct names joined by commas, up to size bytes.
func list(format string, size int) string {
	var b strings.Builder
	for i := 0; ; i++ {
		item := fmt.Sprintf(format, i)
		if b.Len()+len(item)+1 > size {
			return b.String()
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
}

// fit is how many items of about each bytes fill a body, less reserve.
func fit(each, reserve int) int { return (3<<20 - 8192 - reserve) / each }

func containers(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{"name": fmt.Sprintf("c%d", i), "image": "i"}
	}
	return out
}

func pod(annotations map[string]string, containers []any) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"generateName": "run-", "namespace": "flows", "annotations": annotations},
		"spec":     map[string]any{"containers": containers},
	}
}

func job(annotations map[string]string, containers []any) map[string]any {
	return map[string]any{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": "flow-run", "namespace": "flows"},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"annotations": annotations},
			"spec":     map[string]any{"restartPolicy": "Never", "containers": containers},
		}},
	}
}

func review(operation, kind string, object, old map[string]any) []byte {
	return reviewIn("flows", operation, kind, object, old)
}

// reviewIn is a review naming namespace.
func reviewIn(namespace, operation, kind string, object, old map[string]any) []byte {
	group, resource := "", "pods"
	if kind == "Job" {
		group, resource = "batch", "jobs"
	}
	req := map[string]any{
		"uid":       "hostile",
		"kind":      map[string]any{"group": group, "version": "v1", "kind": kind},
		"resource":  map[string]any{"group": group, "version": "v1", "resource": resource},
		"namespace": namespace, "operation": operation,
		"userInfo": map[string]any{"username": "tenant"},
		"object":   object,
	}
	if old != nil {
		req["oldObject"] = old
	}
	b, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	if err != nil {
		panic(err)
	}
	return b
}

// connectedCases are what only a cluster connection makes costly: Events kept by client-go's
// broadcaster, reads of Namespaces the cache lacks, and the key cache filled through its watch.
// Each is issue 29's, as it measured them on the old main.
func connectedCases(c *localcluster.Cluster) []hostileCase {
	podPath := "/mutate-v1-pod"
	huge := strings.Repeat("j", 5<<19) // 2.5 MB
	// 1,000 refused pods, each controlled by a Job of a distinct 2.5 MB name and a fresh UID: on
	// the old main each was an Event the broadcaster kept for minutes.
	owned := func(i int) []byte {
		p := pod(map[string]string{"flowauth.io/secrets": "AWS..X"}, containers(1))
		p["metadata"].(map[string]any)["ownerReferences"] = []any{map[string]any{
			"apiVersion": "batch/v1", "kind": "Job", "name": fmt.Sprintf("j%05d", i) + huge, "uid": uuid.NewString(), "controller": true,
		}}
		return review("CREATE", "Pod", p, nil)
	}
	// 1,000 forged reviews, each naming a namespace that does not exist, of a Prefect flow-run
	// pod declaring nothing (the pod whose namespace is read): on the old main each cost a read.
	forged := func(i int) []byte {
		p := pod(nil, containers(1))
		meta := p["metadata"].(map[string]any)
		meta["labels"] = map[string]string{"prefect.io/flow-run-id": uuid.NewString()}
		ns := fmt.Sprintf("forged-%d-%s", i, uuid.NewString()[:8])
		meta["namespace"] = ns
		return reviewIn(ns, "CREATE", "Pod", p, nil)
	}
	return []hostileCase{
		{name: "owner-names-2.5MB-x1000", path: podPath, n: 1000, bodyN: owned, noEvents: true},
		{name: "forged-namespaces-x1000", path: podPath, n: 1000, bodyN: forged, maxRequests: 25},
		{name: "configmaps-8000x16KiB", setup: func() error { return manyKeyConfigMaps(c, 8000) }, setupObjects: 8000},
	}
}

// manyKeyConfigMaps creates n ConfigMaps in a namespace of their own, each with about 16 KiB of
// distinct key names (empty values), and waits until the webhook's watch has them all.
func manyKeyConfigMaps(c *localcluster.Cluster, n int) error {
	ctx := context.Background()
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 500, 500
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant"}}); err != nil {
		return err
	}
	work := make(chan int)
	g := errgroup.Group{}
	for range concurrent {
		g.Go(func() error {
			for i := range work {
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("many-keys-%d", i), Namespace: "tenant"}, Data: map[string]string{}}
				for k := range 1330 { // 1,330 keys of 11 bytes and their separators: 15,960 bytes
					cm.Data[fmt.Sprintf("k%05d-%04d", i, k)] = ""
				}
				if err := cl.Create(ctx, cm); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	return g.Wait()
}
