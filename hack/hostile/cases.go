package main

import (
	"encoding/json"
	"fmt"
	"strings"
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
	group, resource := "", "pods"
	if kind == "Job" {
		group, resource = "batch", "jobs"
	}
	req := map[string]any{
		"uid":       "hostile",
		"kind":      map[string]any{"group": group, "version": "v1", "kind": kind},
		"resource":  map[string]any{"group": group, "version": "v1", "resource": resource},
		"namespace": "flows", "operation": operation,
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
