// Command pause is the local node's sandbox ("pause") image: it holds a pod's namespaces open and
// does nothing else until the kubelet stops the pod. Ours, because no image can be pulled from
// outside this machine.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
