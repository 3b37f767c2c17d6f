package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// document is one object read from the input, with where it came from.
type document struct {
	file   string
	object map[string]any
}

// readInputs reads every object in paths (files, folders of .yaml/.yml/.json files, or "-" for
// standard input), expanding kind: List.
func readInputs(paths []string, stdin io.Reader) ([]document, error) {
	var docs []document
	for _, p := range paths {
		if p == "-" {
			d, err := readDocuments("<stdin>", stdin)
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if info.IsDir() {
			files = nil
			err := filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(path)) {
					files = append(files, path)
				}
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		for _, f := range files {
			r, err := os.Open(f)
			if err != nil {
				return nil, err
			}
			d, err := readDocuments(f, r)
			_ = r.Close()
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}

func readDocuments(name string, r io.Reader) ([]document, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var docs []document
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if obj == nil || obj["kind"] == nil {
			continue // not a Kubernetes object (a Helm values file, say)
		}
		if items, ok := obj["items"].([]any); ok && strings.HasSuffix(fmt.Sprint(obj["kind"]), "List") {
			for _, item := range items {
				if m, ok := item.(map[string]any); ok {
					docs = append(docs, document{file: name, object: m})
				}
			}
			continue
		}
		docs = append(docs, document{file: name, object: obj})
	}
}

// placeholder is a Prefect work-pool template variable standing for a whole value.
var placeholder = regexp.MustCompile(`^\s*\{\{.*\}\}\s*$`)

// readWorkPool reads a Prefect 2/3 work pool's base job template (as `prefect work-pool inspect`
// or the UI's JSON shows it) and returns its job_configuration.job_manifest: the Job a worker
// creates. Values that are only a template variable ("{{ image }}", "{{ env }}") cannot be known
// offline and are dropped, so that what remains decodes as a Job; flowauth's annotations are
// literal in the manifest or they cannot be checked.
func readWorkPool(path string) (document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return document{}, err
	}
	type template struct {
		JobConfiguration struct {
			JobManifest map[string]any `json:"job_manifest"`
		} `json:"job_configuration"`
		Variables struct {
			Properties map[string]struct {
				Default any `json:"default"`
			} `json:"properties"`
		} `json:"variables"`
	}
	var pool struct {
		template
		// `prefect work-pool inspect` nests it under base_job_template.
		BaseJobTemplate *template `json:"base_job_template"`
	}
	if err := json.Unmarshal(b, &pool); err != nil {
		return document{}, fmt.Errorf("work pool %s: %w", path, err)
	}
	t := pool.template
	if t.JobConfiguration.JobManifest == nil && pool.BaseJobTemplate != nil {
		t = *pool.BaseJobTemplate
	}
	manifest := t.JobConfiguration.JobManifest
	if manifest == nil {
		return document{}, fmt.Errorf("work pool %s: no job_configuration.job_manifest", path)
	}
	defaults := map[string]any{}
	for name, v := range t.Variables.Properties {
		if v.Default != nil {
			defaults[name] = v.Default
		}
	}
	fillPlaceholders(manifest, defaults)
	return document{file: path, object: manifest}, nil
}

// fillPlaceholders replaces each value that is only a template variable with the variable's
// default, as a worker does for a deployment that does not override it ("{{ flowauth_secrets }}"
// becomes "AWS_CREDENTIALS, GITHUB_ACCESS_TOKEN"); a variable without a default cannot be known
// offline, and its value is dropped.
func fillPlaceholders(v any, defaults map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && placeholder.MatchString(s) {
				if d, ok := defaults[placeholderName(s)]; ok {
					v[k] = d
				} else {
					delete(v, k)
				}
				continue
			}
			fillPlaceholders(x, defaults)
		}
	case []any:
		for _, x := range v {
			fillPlaceholders(x, defaults)
		}
	}
}

// placeholderName is the variable of "{{ name }}".
func placeholderName(s string) string {
	s = strings.TrimSpace(s)
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "{{"), "}}"))
}

// toYAML is how render prints objects: kubectl's -o yaml shape.
func toYAML(obj map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	b, err := yamlMarshal(obj)
	if err != nil {
		return nil, err
	}
	buf.WriteString("---\n")
	buf.Write(b)
	return buf.Bytes(), nil
}

func pemBlock(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func parseLeaf(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
