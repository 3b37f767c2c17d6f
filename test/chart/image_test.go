package chart

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestImageIsAStaticNonRootBinary checks the Dockerfile without a container runtime (CI has
// none): its final stage is empty but for the binary, runs as a non-root uid the chart agrees
// with, and its build command, run with its Go version, gives a static binary here too.
func TestImageIsAStaticNonRootBinary(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(src)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(dockerfile, -1)
	if len(froms) < 2 || froms[len(froms)-1][1] != "scratch" {
		t.Errorf("final stage must be FROM scratch, stages: %v", froms)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(dockerfile)
	if user == nil || user[1] == "0" {
		t.Errorf("the image must set a numeric non-root USER, found %v", user)
	}
	deploy := find(t, decode(t, mustHelm(t, release...)), "Deployment")
	if uid := fmt.Sprint(at(deploy.Object, "spec.template.spec.securityContext.runAsUser")); user != nil && uid != user[1] {
		t.Errorf("chart runAsUser %s differs from the image's USER %s", uid, user[1])
	}

	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 .*go build .*) -o /out/webhook (\S+)$`).FindStringSubmatch(dockerfile)
	if build == nil {
		t.Fatal("no `RUN CGO_ENABLED=0 ... go build ... -o /out/webhook PKG` line in the Dockerfile")
	}
	goVersion := regexp.MustCompile(`(?m)^FROM golang:([0-9.]+) AS build$`).FindStringSubmatch(dockerfile)
	if goVersion == nil {
		t.Fatal("no `FROM golang:<version> AS build` stage in the Dockerfile")
	}
	out := filepath.Join(t.TempDir(), "webhook")
	cmd := exec.CommandContext(t.Context(), "sh", "-c", build[1]+" -o "+out+" "+build[2])
	cmd.Dir = root
	// The same Go as the image's build stage, fetched through the module proxy.
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=go"+goVersion[1])
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", build[1], err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v): it cannot run on scratch", p.Type)
		}
	}
}
