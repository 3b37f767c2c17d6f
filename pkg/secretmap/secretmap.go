// Package secretmap is the table that maps Prefect's default secret names to the Kubernetes Secret
// they come from, the keys expected in it, and the env vars and files injected for each
// (DESIGN.md §3). It is pure data and parsing: the built-in table, the operator's YAML extension
// file, their validation, and a Store that swaps whole validated maps atomically on reload.
package secretmap

import (
	"fmt"
	"sort"
	"strings"
)

// Shape says how Prefect expects a secret's value, which decides the prefect layer's env vars.
type Shape string

const (
	// ShapeString is one key, read into PREFECT__CONTEXT__SECRETS__<NAME>.
	ShapeString Shape = "string"
	// ShapeDict is one key per dict entry, read into PREFECT__CONTEXT__SECRETS__<NAME>__<KEY>:
	// Prefect's config loader nests them into a dict, so no JSON is composed.
	ShapeDict Shape = "dict"
	// ShapeJSON is one key whose whole value is a JSON document (a GCP service-account key),
	// read into PREFECT__CONTEXT__SECRETS__<NAME>.
	ShapeJSON Shape = "json"
)

// Key is one key expected in the Kubernetes Secret.
type Key struct {
	Name string `json:"name"`
	// Optional keys are referenced with optional: true, so a Secret without them still works.
	Optional bool `json:"optional,omitempty"`
}

// EnvVar is a native-layer env var whose value comes from a key of the Secret.
type EnvVar struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// File is a native-layer file: a key of the Secret mounted read-only under MountDir, optionally
// announced to the library through an env var holding its path.
type File struct {
	Key string `json:"key"`
	Env string `json:"env,omitempty"`
}

// Native is what the library under the task reads without Prefect (Prefect's "final fallback").
type Native struct {
	Env   []EnvVar `json:"env,omitempty"`
	Files []File   `json:"files,omitempty"`
}

// Entry describes one default secret name.
type Entry struct {
	// Name is the declared name, e.g. AWS_CREDENTIALS (the map key in the YAML file).
	Name string `json:"-"`
	// SecretName is the Kubernetes Secret used unless the pod overrides it; default DashName(Name).
	SecretName  string `json:"secretName,omitempty"`
	Shape       Shape  `json:"shape"`
	Keys        []Key  `json:"keys"`
	Native      Native `json:"native,omitempty"`
	Description string `json:"description,omitempty"`
}

// Key returns the named key of the entry.
// IsFile reports whether the native layer mounts the key as a file (a key file, not a string).
func (e Entry) IsFile(key string) bool {
	for _, f := range e.Native.Files {
		if f.Key == key {
			return true
		}
	}
	return false
}

func (e Entry) Key(name string) (Key, bool) {
	for _, k := range e.Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// Map is an immutable, validated set of entries. Share it freely between goroutines.
type Map struct {
	entries map[string]Entry
	names   []string // sorted, computed once
}

// Lookup returns the entry for a declared name, if the map knows it.
func (m *Map) Lookup(name string) (Entry, bool) {
	e, ok := m.entries[name]
	return e, ok
}

// Resolve returns the entry for a declared name, or the custom-secret entry of DESIGN.md §3 (a
// string from key "value", no native layer) for a name the map does not know.
func (m *Map) Resolve(name string) (entry Entry, known bool) {
	if e, ok := m.entries[name]; ok {
		return e, true
	}
	return CustomEntry(name), false
}

// Names returns every name in the map, sorted. The slice is shared: do not modify it.
func (m *Map) Names() []string {
	if m.names != nil {
		return m.names
	}
	return sortedNames(m.entries)
}

func sortedNames(entries map[string]Entry) []string {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CustomEntry is what a name outside the map gets: a string secret from key "value".
func CustomEntry(name string) Entry {
	return Entry{Name: name, SecretName: DashName(name), Shape: ShapeString, Keys: []Key{{Name: CustomKey}}}
}

// CustomKey is the Secret key that custom names and string-shaped defaults are read from.
const CustomKey = "value"

// MountRoot is the folder under which native files are mounted, one sub-folder per declared name.
const MountRoot = "/var/run/secrets/flowauth"

// VolumePrefix starts the name of every volume flowauth adds, so users can see whose it is.
const VolumePrefix = "flowauth-"

// MaxNameLength bounds declared names: the derived Secret name must be a DNS label.
const MaxNameLength = 63

// DashName turns a declared name into the default Kubernetes Secret name: lower case, '_' → '-'.
func DashName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// MountDir is where an entry's files are mounted. It is named after the declared name, not the
// Secret, so the path stays the same when a pod overrides the Secret.
func MountDir(name string) string { return MountRoot + "/" + DashName(name) }

// VolumeName is the pod volume that carries an entry's files.
func VolumeName(name string) string { return VolumePrefix + DashName(name) }

// isNameShaped reports whether name matches [A-Z][A-Z0-9_]*: a loop rather than a regular
// expression, since every declared name of every flow-run pod is checked on the admission path.
// FuzzNameShapeMatchesThePattern holds it to the pattern.
func isNameShaped(name string) bool {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return name != ""
}

// ValidateName checks a declared secret name (DESIGN.md §2): [A-Z][A-Z0-9_]*, no "__" (Prefect
// splits env var names on "__", so such a name cannot be expressed), no trailing "_" (it would
// merge with the "__" before a dict key), at most MaxNameLength characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is empty")
	case len(name) > MaxNameLength:
		return fmt.Errorf("is %d characters long; at most %d are allowed", len(name), MaxNameLength)
	case !isNameShaped(name):
		return fmt.Errorf("must match [A-Z][A-Z0-9_]* (upper-case letters, digits and '_', starting with a letter)")
	case strings.Contains(name, "__"):
		return fmt.Errorf(`must not contain "__" (Prefect splits PREFECT__CONTEXT__SECRETS__ variables on "__")`)
	case strings.HasSuffix(name, "_"):
		return fmt.Errorf(`must not end with "_" (it would run into the "__" that Prefect splits on)`)
	}
	return nil
}
