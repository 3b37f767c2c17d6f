package secretmap

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// File format of the operator's extension file (--secret-map, the chart's secretMap value):
//
//	apiVersion: flowauth.io/v1alpha1
//	kind: SecretMap
//	secrets:
//	  MY_API_TOKEN:                  # a new name, or a built-in one to replace wholesale
//	    secretName: my-api           # default: the name in lower case with '_' → '-'
//	    shape: string                # string | dict | json
//	    keys: [{name: value}]        # optional: true for keys a Secret may lack
//	    native:
//	      env: [{name: MY_API_TOKEN, key: value}]
//	      files: [{key: value, env: MY_API_TOKEN_FILE}]
const (
	APIVersion = "flowauth.io/v1alpha1"
	Kind       = "SecretMap"
)

type file struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Secrets    map[string]Entry `json:"secrets"`
}

// Parse reads an extension file and returns the built-in map with the file's entries added or
// replacing built-in ones. Unknown fields, duplicate keys and any invalid entry reject the whole
// file: an error names the entry and the field.
func Parse(data []byte) (*Map, error) {
	// YAML → JSON, then a case-sensitive strict decode: a field spelled "secretname" is an unknown
	// field, not a silent match for "secretName" as encoding/json would make it.
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("not a valid SecretMap document: %w", err)
	}
	var f file
	strictErrs, err := kjson.UnmarshalStrict(j, &f)
	if err != nil {
		return nil, fmt.Errorf("not a valid SecretMap document: %w", err)
	}
	if err := errors.Join(strictErrs...); err != nil {
		return nil, fmt.Errorf("not a valid SecretMap document: %w", err)
	}
	if f.APIVersion != APIVersion || f.Kind != Kind {
		return nil, fmt.Errorf("apiVersion/kind must be %s/%s, got %q/%q", APIVersion, Kind, f.APIVersion, f.Kind)
	}
	extra := make([]Entry, 0, len(f.Secrets))
	for name, e := range f.Secrets {
		e.Name = name
		extra = append(extra, e)
	}
	return build(extra)
}

// LoadFile reads and parses an extension file; errors start with the file's path.
func LoadFile(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret map %s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("secret map %s: %w", path, err)
	}
	return m, nil
}

// build validates the built-in entries plus extra (which win on equal names) into a Map, filling
// in defaults. Every invalid entry is reported, sorted by name, so one run shows every mistake.
func build(extra []Entry) (*Map, error) {
	entries := make(map[string]Entry, len(builtinEntries)+len(extra))
	for _, e := range builtinEntries {
		entries[e.Name] = e
	}
	for _, e := range extra {
		entries[e.Name] = e
	}
	var errs []error
	for _, name := range sortedKeys(entries) {
		e := entries[name]
		if e.SecretName == "" {
			e.SecretName = DashName(e.Name)
		}
		if err := validateEntry(e); err != nil {
			errs = append(errs, fmt.Errorf("entry %q: %w", name, err))
			continue
		}
		entries[name] = e
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Map{entries: entries, names: sortedNames(entries)}, nil
}

// dictKeyPattern: a dict key becomes the last segment of PREFECT__CONTEXT__SECRETS__<NAME>__<KEY>,
// so it must be a valid env-name segment that Prefect's "__" split keeps whole.
var (
	dictKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$`)
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// PrefectEnvPrefix starts every prefect-layer env var.
const PrefectEnvPrefix = "PREFECT__CONTEXT__SECRETS__"

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("field %s: %s", field, fmt.Sprintf(format, args...))
}

// validateEntry enforces what DESIGN.md §3 requires of an entry: names that are safe in env names,
// Secret names, volume names and paths, and layers that only reference keys the entry declares.
func validateEntry(e Entry) error {
	if err := ValidateName(e.Name); err != nil {
		return fmt.Errorf("name %q %w", e.Name, err)
	}
	if msgs := validation.IsDNS1123Subdomain(e.SecretName); len(msgs) > 0 {
		return fieldErr("secretName", "%q is not a valid Secret name: %s", e.SecretName, strings.Join(msgs, "; "))
	}
	switch e.Shape {
	case ShapeString, ShapeJSON:
		if len(e.Keys) != 1 {
			return fieldErr("keys", "shape %q takes exactly one key, got %d", e.Shape, len(e.Keys))
		}
	case ShapeDict:
		if len(e.Keys) == 0 {
			return fieldErr("keys", "shape dict needs at least one key")
		}
	default:
		return fieldErr("shape", "%q is not one of string, dict, json", e.Shape)
	}
	seen := map[string]bool{}
	for i, k := range e.Keys {
		field := fmt.Sprintf("keys[%d].name", i)
		if msgs := validation.IsConfigMapKey(k.Name); len(msgs) > 0 {
			return fieldErr(field, "%q is not a valid Secret key: %s", k.Name, strings.Join(msgs, "; "))
		}
		if e.Shape == ShapeDict && !dictKeyPattern.MatchString(k.Name) {
			return fieldErr(field, "%q cannot be a dict key: Prefect reads it from an env var name, so it must match [A-Za-z0-9]+ joined by single '_'", k.Name)
		}
		if seen[k.Name] {
			return fieldErr(field, "key %q is listed twice", k.Name)
		}
		seen[k.Name] = true
	}
	envs := map[string]bool{}
	checkEnv := func(field, name string) error {
		if !envNamePattern.MatchString(name) {
			return fieldErr(field, "%q is not a valid environment variable name (must match [A-Za-z_][A-Za-z0-9_]*)", name)
		}
		if strings.HasPrefix(name, PrefectEnvPrefix) {
			return fieldErr(field, "%q would collide with the prefect layer (%s...)", name, PrefectEnvPrefix)
		}
		if envs[name] {
			return fieldErr(field, "env var %q is set twice", name)
		}
		envs[name] = true
		return nil
	}
	for i, v := range e.Native.Env {
		if err := checkEnv(fmt.Sprintf("native.env[%d].name", i), v.Name); err != nil {
			return err
		}
		if !seen[v.Key] {
			return fieldErr(fmt.Sprintf("native.env[%d].key", i), "%q is not one of the entry's keys", v.Key)
		}
	}
	files := map[string]bool{}
	for i, f := range e.Native.Files {
		if !seen[f.Key] {
			return fieldErr(fmt.Sprintf("native.files[%d].key", i), "%q is not one of the entry's keys", f.Key)
		}
		if files[f.Key] {
			return fieldErr(fmt.Sprintf("native.files[%d].key", i), "key %q is mounted twice", f.Key)
		}
		files[f.Key] = true
		if f.Env != "" {
			if err := checkEnv(fmt.Sprintf("native.files[%d].env", i), f.Env); err != nil {
				return err
			}
		}
	}
	if len(e.Native.Files) > 0 {
		if msgs := validation.IsDNS1123Label(VolumeName(e.Name)); len(msgs) > 0 {
			return fieldErr("native.files", "the volume name %q derived from the entry's name is invalid: %s (use a shorter name)", VolumeName(e.Name), strings.Join(msgs, "; "))
		}
	}
	return nil
}

func sortedKeys(m map[string]Entry) []string { return sortedNames(m) }
