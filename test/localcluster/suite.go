package localcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// StartForSuite starts a node cluster for a test package's TestMain, in a fresh short folder
// (containerd's and the shims' sockets live below it) that done removes after Stop. Without root
// it starts nothing: under CI=true that is an error (a CI machine must never pass the node tests
// by not running them), elsewhere skip is the reason each test gives for skipping.
func StartForSuite(suite string, o Options) (c *Cluster, skip string, done func(), err error) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			return nil, "", nil, fmt.Errorf("%w - CI must run as root", ErrNotRoot)
		}
		return nil, ErrNotRoot.Error() + ": run `sudo make test-node`", func() {}, nil
	}
	o.WorkDir, err = os.MkdirTemp("", "flowauth-"+suite+"-")
	if err != nil {
		return nil, "", nil, err
	}
	o.Node = true
	c, err = Start(context.Background(), o)
	if err != nil {
		return nil, "", nil, errors.Join(err, os.RemoveAll(o.WorkDir))
	}
	return c, "", func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: teardown: %v\n", suite, err)
		}
		_ = os.RemoveAll(o.WorkDir)
	}, nil
}
