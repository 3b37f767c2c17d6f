package mutate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flowauth/flowauth/pkg/secretmap"
)

// splitList splits an annotation value on commas and white space, dropping empty items and
// repeats (a name listed twice is served once), keeping the first order. It keeps at most
// maxListItems items and returns how many distinct items it saw, stopping at one more, so a huge
// value costs at most a scan and no more memory than the bound: the caller refuses a longer list.
func splitList(value string) (items []string, total int) {
	const max = maxListItems
	isSep := func(r rune) bool { return r == ',' || unicode.IsSpace(r) }
	for len(value) > 0 {
		start := strings.IndexFunc(value, func(r rune) bool { return !isSep(r) })
		if start < 0 {
			break
		}
		value = value[start:]
		end := strings.IndexFunc(value, isSep)
		if end < 0 {
			end = len(value)
		}
		item := value[:end]
		value = value[end:]
		if slices.Contains(items, item) {
			continue
		}
		total++
		if len(items) == max {
			break // one more than max is all the caller needs to know
		}
		items = append(items, item)
	}
	return items, total
}

// invalidLabel and invalidSubdomain check a name the API server checks only after admission.
// The length comes first: a megabyte-long name is refused without running a regular
// expression over it.
func invalidLabel(name string) []string {
	if len(name) > validation.DNS1123LabelMaxLength {
		return []string{fmt.Sprintf("must be no more than %d characters", validation.DNS1123LabelMaxLength)}
	}
	return validation.IsDNS1123Label(name)
}

func invalidSubdomain(name string) []string {
	if len(name) > validation.DNS1123SubdomainMaxLength {
		return []string{fmt.Sprintf("must be no more than %d characters", validation.DNS1123SubdomainMaxLength)}
	}
	return validation.IsDNS1123Subdomain(name)
}

// quote shows a user's text in a message: Go-quoted, so newlines and control characters stay
// visible and cannot forge extra lines, and cut short when long.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// some lists at most maxListedInMessage names, then says how many more there are, so a message
// or status line stays short whatever a pod lists.
func some(names []string) string {
	if len(names) <= maxListedInMessage {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListedInMessage], ", "), len(names)-maxListedInMessage)
}

// someComma is some for the status line, whose lists are comma-separated without spaces.
func someComma(names []string) string {
	if len(names) <= maxListedInMessage {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s,+%d", strings.Join(names[:maxListedInMessage], ","), len(names)-maxListedInMessage)
}

// parseNames reads a flowauth.io/secrets value into valid names and one message per invalid item.
func parseNames(where, value string) (names []string, problems []string) {
	items, total := splitList(value)
	if total > MaxDeclaredNames {
		return nil, []string{fmt.Sprintf("%s declares more than %d names, which is the most allowed", where, MaxDeclaredNames)}
	}
	for _, item := range items {
		if err := secretmap.ValidateName(item); err != nil {
			problems = append(problems, fmt.Sprintf("%s: entry %s is not a valid secret name: it %v", where, quote(item), err))
			continue
		}
		names = append(names, item)
	}
	return names, problems
}

// suggest returns the known name closest to an unknown one, if it is a likely typo.
func suggest(name string, known []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, k := range known {
		if d := editDistance(name, k, bestDist); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, or limit when it is at least limit.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
