package docs

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/flowauth/flowauth/internal/pagesection"
)

// ValuesReference is the chart's values as a Markdown table, from the chart itself: each value's
// path, its default (values.yaml), its type and allowed values (values.schema.json), and what it
// does (its comment in values.yaml). docs/configuration.md holds it; TestValuesReferenceIsCurrent
// keeps the page equal to it (make update-golden writes it).
func ValuesReference(valuesFile, schemaFile string) (string, error) {
	raw, err := os.ReadFile(valuesFile)
	if err != nil {
		return "", err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return "", err
	}
	schemaRaw, err := os.ReadFile(schemaFile)
	if err != nil {
		return "", err
	}
	var schema map[string]any
	if err := json.Unmarshal(schemaRaw, &schema); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| value | default | type | what it does |\n|---|---|---|---|\n")
	walk(&b, doc.Content[0], "", schema)
	return b.String(), nil
}

// walk writes a row for each leaf of mapping node n (under a path prefix, with its schema); a
// mapping's own comment is a row of its own, above its values'.
func walk(b *strings.Builder, n *yaml.Node, prefix string, schema map[string]any) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		path := prefix + key.Value
		comment := comment(key.HeadComment)
		sub := property(schema, key.Value)
		if val.Kind == yaml.MappingNode && len(val.Content) > 0 && !freeForm(sub) {
			if comment != "" {
				fmt.Fprintf(b, "| **`%s`** | | | %s |\n", path, pagesection.Cell(comment))
			}
			walk(b, val, path+".", sub)
			continue
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", path, pagesection.Cell(defaultOf(val)), pagesection.Cell(typeOf(sub)), pagesection.Cell(comment))
	}
}

// property is the schema of a mapping's key (nil when the schema says nothing).
func property(schema map[string]any, key string) map[string]any {
	props, _ := schema["properties"].(map[string]any)
	p, _ := props[key].(map[string]any)
	return p
}

// freeForm: a map whose keys are the user's (labels, annotations, a selector): one row.
func freeForm(schema map[string]any) bool {
	if schema == nil {
		return false
	}
	_, has := schema["properties"]
	return !has
}

func typeOf(schema map[string]any) string {
	if schema == nil {
		return ""
	}
	var parts []string
	switch t := schema["type"].(type) {
	case string:
		parts = append(parts, t)
	case []any:
		for _, x := range t {
			parts = append(parts, fmt.Sprint(x))
		}
	}
	if enum, ok := schema["enum"].([]any); ok {
		var vals []string
		for _, v := range enum {
			vals = append(vals, fmt.Sprint(v))
		}
		parts = append(parts, "one of "+strings.Join(vals, ", "))
	}
	if min, ok := schema["minimum"]; ok {
		parts = append(parts, fmt.Sprintf("at least %v", min))
	}
	if max, ok := schema["maximum"]; ok {
		parts = append(parts, fmt.Sprintf("at most %v", max))
	}
	return strings.Join(parts, ", ")
}

func defaultOf(n *yaml.Node) string {
	var v any
	if err := n.Decode(&v); err != nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return "`" + s + "`"
}

// comment is a YAML comment's text, one line.
func comment(c string) string {
	var words []string
	for _, line := range strings.Split(c, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}
