package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// FlowRunReview is the load harness's flow-run AdmissionReview (pkg/admission/testdata/admload).
func FlowRunReview(t testing.TB, repoRoot string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join(repoRoot, "pkg", "admission", "testdata", "admload", "flowrun.json"))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// Admit posts one AdmissionReview as the API server does and checks that the answer is an
// allowed review with a patch.
func Admit(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || rev.Response == nil || !rev.Response.Allowed || len(rev.Response.Patch) == 0 {
		return fmt.Errorf("unexpected answer: HTTP %d", resp.StatusCode)
	}
	return nil
}

// ProcStatus reads one field of /proc/<pid>/status (e.g. VmRSS, VmHWM), "unknown" if it cannot.
func ProcStatus(pid int, field string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
