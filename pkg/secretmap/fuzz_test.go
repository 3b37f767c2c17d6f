package secretmap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse feeds arbitrary bytes to the secret-map loader. Invariants: no panic; a rejected
// file gives an error naming what is wrong; an accepted map holds every built-in name, and every
// entry it holds passes validation again (nothing invalid slips through), with mount paths that
// stay under flowauth's folder.
func FuzzParse(f *testing.F) {
	f.Add([]byte(readmeExample))
	f.Add([]byte("apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets: {}\n"))
	f.Add([]byte("apiVersion: flowauth.io/v1alpha1\nkind: SecretMap\nsecrets:\n  X:\n    shape: string\n    keys: [{name: ../etc}]\n"))
	f.Add([]byte("secrets: [1, 2]"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if err.Error() == "" || !utf8.ValidString(err.Error()) {
				t.Fatalf("error message %q", err.Error())
			}
			return
		}
		for _, e := range Builtin().Names() {
			if _, ok := m.Lookup(e); !ok {
				t.Fatalf("accepted map lost built-in %s", e)
			}
		}
		for _, name := range m.Names() {
			e, _ := m.Lookup(name)
			if err := validateEntry(e); err != nil {
				t.Fatalf("accepted map holds an invalid entry %s: %v", name, err)
			}
			for _, file := range e.Native.Files {
				if p := MountDir(name) + "/" + file.Key; strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
					t.Fatalf("mount path %s escapes its folder", p)
				}
			}
		}
	})
}

const readmeExample = `apiVersion: flowauth.io/v1alpha1
kind: SecretMap
secrets:
  DBT_CLOUD:
    secretName: dbt-cloud
    shape: dict
    keys: [{name: ACCOUNT_ID}, {name: TOKEN}, {name: HOST, optional: true}]
    native:
      env: [{name: DBT_CLOUD_API_TOKEN, key: TOKEN}]
      files: [{key: TOKEN, env: DBT_CLOUD_TOKEN_FILE}]
`
