package secretkeys

import (
	"errors"
	"fmt"
	"io"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// listMeta is what a list response says about itself.
type listMeta struct {
	ResourceVersion string `json:"resourceVersion"`
	Continue        string `json:"continue"`
}

// wireObject is the part of a Secret or ConfigMap that flowauth reads. Other fields
// (annotations, managedFields, stringData) are skipped as they stream past.
type wireObject struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Type       string   `json:"type"`
	Data       keyNames `json:"data"`
	BinaryData keyNames `json:"binaryData"`
}

// item is one listed Secret or ConfigMap as flowauth keeps it: names, a Secret's type, and the
// key names.
type item struct {
	namespace, name, secretType string
	keys                        []string
}

// keyNames reads a JSON object's member names and skips their values: a key's value is never
// copied out of the decoder's window onto the response, and no map is built to hold nothing.
type keyNames []string

func (k *keyNames) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return err
	}
	if err := expectKind(dec, '{'); err != nil {
		return err
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*k = append(*k, name.String())
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	return expectKind(dec, '}')
}

var decodeOptions = jsonv2.JoinOptions(jsonv2.RejectUnknownMembers(false), jsontext.AllowDuplicateNames(true))

// decodeList reads a Secret or ConfigMap list (JSON) as it arrives and hands each item to each
// as its namespace, name and key names. Values are skipped, never held: a page of 500 Helm
// releases of 1 MiB costs the decoder's window, not 500 MiB.
func decodeList(r io.Reader, each func(item)) (listMeta, error) {
	var meta listMeta
	dec := jsontext.NewDecoder(r, decodeOptions)
	if err := expectKind(dec, '{'); err != nil {
		return meta, err
	}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return meta, err
		}
		switch tok.String() {
		case "metadata":
			if err := jsonv2.UnmarshalDecode(dec, &meta, decodeOptions); err != nil {
				return meta, fmt.Errorf("list metadata: %w", err)
			}
		case "items":
			if err := decodeItems(dec, each); err != nil {
				return meta, err
			}
		default:
			if err := dec.SkipValue(); err != nil {
				return meta, err
			}
		}
	}
	return meta, expectKind(dec, '}')
}

func decodeItems(dec *jsontext.Decoder, each func(item)) error {
	if dec.PeekKind() == 'n' { // "items": null
		_, err := dec.ReadToken()
		return err
	}
	if err := expectKind(dec, '['); err != nil {
		return fmt.Errorf("items: %w", err)
	}
	for dec.PeekKind() != ']' {
		if dec.PeekKind() != '{' {
			return fmt.Errorf("%w: list item of kind %v", errNotJSONList, dec.PeekKind())
		}
		var o wireObject
		if err := jsonv2.UnmarshalDecode(dec, &o, decodeOptions); err != nil {
			return fmt.Errorf("list item: %w", err)
		}
		each(item{namespace: o.Metadata.Namespace, name: o.Metadata.Name, secretType: o.Type, keys: append(o.Data, o.BinaryData...)})
	}
	return expectKind(dec, ']')
}

var errNotJSONList = errors.New("the API server's answer is not a JSON list")

func expectKind(dec *jsontext.Decoder, want jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return fmt.Errorf("%w: %w", errNotJSONList, err)
	}
	if tok.Kind() != want {
		return fmt.Errorf("%w: expected %v, found %v", errNotJSONList, want, tok.Kind())
	}
	return nil
}
