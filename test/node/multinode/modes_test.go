package multinode

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flowauth/flowauth/test/localcluster"
)

// phase is a stretch of one stream of flow-run creations, from a step to the next.
type phase struct {
	name string
	from time.Time
}

// report says, per phase, how many creations were sent and how many failed (refused, or stored
// without their injection or with it twice: CreateFlowRun checks the stored pod).
func report(all []localcluster.Creation, phases []phase) (string, int) {
	var b strings.Builder
	failed := 0
	for i, p := range phases {
		sent, bad := 0, 0
		var first error
		for _, c := range all {
			if c.At.Before(p.from) || (i+1 < len(phases) && !c.At.Before(phases[i+1].from)) {
				continue
			}
			sent++
			if c.Err != nil {
				bad++
				if first == nil {
					first = c.Err
				}
			}
		}
		failed += bad
		fmt.Fprintf(&b, "\n  %-34s %4d sent, %3d failed", p.name, sent, bad)
		if first != nil {
			fmt.Fprintf(&b, " (first: %v)", first)
		}
	}
	return b.String(), failed
}

// steps starts a stream of flow-run creations in ns (one every 100 ms); step runs a step of the
// test as a phase of it, then lets 5 s of the stream pass; stop ends the stream.
func steps(ns string) (step func(name string, do func()), stop func() ([]localcluster.Creation, []phase)) {
	stream := cluster.StartFlowRunStream(ns, 100*time.Millisecond)
	var phases []phase
	step = func(name string, do func()) {
		phases = append(phases, phase{name, time.Now()})
		do()
		time.Sleep(5 * time.Second)
	}
	return step, func() ([]localcluster.Creation, []phase) { return stream.Stop(), phases }
}

// TestModeSwitchAndLostNodeInPolicyMode (issue 31, items 4 and 6): under a stream of flow-run
// creations (one every 100 ms), helm upgrade from the webhook to admission policies and back,
// through admission.mode both, and, in policy mode, a node lost: not one creation refused,
// stored without its credentials or with them twice. In mode both the policies inject first and
// the webhook's second pass recognises their work; the webhook's failurePolicy is Ignore there,
// so its pods may start or stop meanwhile.
func TestModeSwitchAndLostNodeInPolicyMode(t *testing.T) {
	needNodes(t)
	ns := cluster.FlowsNamespace(t, "switch")
	t.Cleanup(func() { helmUpgrade(t, "admission.mode=webhook") })
	step, stop := steps(ns)
	step("webhook", func() {})
	step("upgrade to both", func() { helmUpgrade(t, "admission.mode=both") })
	step("upgrade to policy", func() { helmUpgrade(t, "admission.mode=policy") })
	if got := replicas(t); len(got) != 0 {
		t.Errorf("policy mode still runs webhook pods: %v", got)
	}
	var lost string
	step("policy, a node lost for 70 s", func() {
		nodes := cluster.Nodes()
		lost = nodes[slices.IndexFunc(nodes, func(n string) bool { return n != localcluster.NodeName })]
		restore, err := cluster.LoseNode(lost)
		if err != nil {
			t.Fatal(err)
		}
		// Past the node controller's 40 s grace and the 50 s at which the webhook mode's lost
		// replica left the endpoints.
		time.Sleep(70 * time.Second)
		if err := restore(); err != nil {
			t.Fatalf("bringing %s back: %v", lost, err)
		}
	})
	localcluster.Eventually(t, 3*time.Minute, lost+" Ready again", func() (bool, string) {
		out := kubectl(t, "get", "node", lost, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return out == "True", out
	})
	step("upgrade to both", func() { helmUpgrade(t, "admission.mode=both") })
	step("upgrade to webhook", func() { helmUpgrade(t, "admission.mode=webhook") })
	all, phases := stop()
	table, failed := report(all, phases)
	t.Logf("mode switch through both, and a node lost in policy mode:%s", table)
	if failed > 0 {
		t.Errorf("%d of %d flow-run creations failed across the switch", failed, len(all))
	}
}

// TestDirectModeSwitch measures why the switch goes through mode both: the same stream across a
// direct helm upgrade from the webhook to the policies and back. It is reported, not asserted
// (its losses depend on how fast each side loads); docs/reference.md, "Switching modes", quotes it.
// What it asserts is that each direct upgrade ends in a working mode.
func TestDirectModeSwitch(t *testing.T) {
	needNodes(t)
	ns := cluster.FlowsNamespace(t, "direct")
	t.Cleanup(func() { helmUpgrade(t, "admission.mode=webhook", "admission.switchDirectly=false") })
	step, stop := steps(ns)
	step("webhook", func() {})
	// The chart refuses a direct switch unless told it may lose flow runs.
	if err := cluster.UpgradeFlowauth(context.Background(), "admission.mode=policy"); err == nil || !strings.Contains(err.Error(), "Upgrade to admission.mode=both first") {
		t.Errorf("a direct upgrade from webhook to policy: %v; want the chart to refuse it", err)
	}
	step("upgrade to policy directly", func() { helmUpgrade(t, "admission.mode=policy", "admission.switchDirectly=true") })
	step("upgrade to webhook directly", func() { helmUpgrade(t, "admission.mode=webhook") })
	step("webhook again", func() {})
	all, phases := stop()
	table, failed := report(all, phases)
	t.Logf("direct mode switch: %d of %d creations failed:%s", failed, len(all), table)
	if _, last := report(all[len(all)*9/10:], []phase{{"last tenth", time.Time{}}}); last > 0 {
		t.Errorf("after the direct switch back, creations still fail:%s", table)
	}
}
