// Command kubectl-flowauth is the kubectl plugin `kubectl flowauth`: see, check and diagnose
// what flowauth does to flow runs. render, check and explain run the webhook's own handler in
// process (pkg/render), offline by default; doctor looks at a live cluster, read-only.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"
)

// exitError carries an exit code without a message of its own (the findings were printed).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	err := newRootCommand(streams).ExecuteContext(context.Background())
	var exit exitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	// render and check take --cluster (read the live cluster) as the issue and their help say;
	// kubectl's --cluster (a kubeconfig cluster by name) gives way: --context still chooses one.
	flags.ClusterName = nil
	root := &cobra.Command{
		Use:   "kubectl-flowauth",
		Short: "See, check and diagnose what flowauth injects into Prefect flow runs",
		Long: `The flowauth plugin answers, from the terminal, what flowauth does to flow runs.

render, check and explain run flowauth's own admission handler in this process: their answers are
the webhook's decisions, offline by default. doctor looks at a live cluster, read-only.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// kubectl runs plugins as kubectl-flowauth; its help shows them as "kubectl flowauth".
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl flowauth"},
	}
	flags.AddFlags(root.PersistentFlags())
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.AddCommand(newRenderCommand(flags, streams), newCheckCommand(flags, streams),
		newExplainCommand(streams), newDoctorCommand(flags, streams), newPolicyCommand(streams))
	return root
}

func yamlMarshal(obj any) ([]byte, error) { return yaml.Marshal(obj) }

func fprintf(w io.Writer, format string, args ...any) { _, _ = fmt.Fprintf(w, format, args...) }
