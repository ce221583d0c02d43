package embedded

import (
	"errors"
	"fmt"

	"github.com/256dpi/lungo/bsonkit"
	bsonv1 "go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded/internal/engine"
)

// toDoc converts a document of the port (anything bson v2 marshals to a
// document) to lungo's document type through its BSON bytes.
func toDoc(v any) (bsonkit.Doc, error) {
	b, ok := v.(bson.Raw)
	if !ok {
		var err error
		if b, err = bson.Marshal(v); err != nil {
			return nil, err
		}
	}
	doc := new(bsonv1.D)
	if err := bsonv1.Unmarshal(b, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// toFilter is toDoc for filters, where nil means "every document".
func toFilter(v any) (bsonkit.Doc, error) {
	if v == nil {
		return &bsonv1.D{}, nil
	}
	return toDoc(v)
}

// fromDoc converts a lungo document to raw BSON of the port.
func fromDoc(doc bsonkit.Doc) (bson.Raw, error) {
	b, err := bsonv1.Marshal(doc)
	return bson.Raw(b), err
}

func fromList(list bsonkit.List) ([]bson.Raw, error) {
	out := make([]bson.Raw, len(list))
	for i, doc := range list {
		var err error
		if out[i], err = fromDoc(doc); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// classify maps the engine's errors to the port's sentinels: a unique-index
// violation is store.ErrDuplicate. Every other condition the port names is
// detected by this backend itself.
func classify(err error) error {
	if errors.Is(err, engine.ErrDuplicate) {
		return fmt.Errorf("%w: %w", store.ErrDuplicate, err)
	}
	return err
}

// rawValue converts a value of a lungo document to a raw BSON value of the
// port; a missing value is null.
func rawValue(v any) (bson.RawValue, error) {
	switch v := v.(type) {
	case nil:
		return bson.RawValue{Type: bson.TypeNull}, nil
	case string: // the common values of a grouping, without a marshal
		return bson.RawValue{Type: bson.TypeString, Value: bsoncore.AppendString(nil, v)}, nil
	case int32:
		return bson.RawValue{Type: bson.TypeInt32, Value: bsoncore.AppendInt32(nil, v)}, nil
	case int64:
		return bson.RawValue{Type: bson.TypeInt64, Value: bsoncore.AppendInt64(nil, v)}, nil
	}
	if v == bsonkit.Missing {
		return bson.RawValue{Type: bson.TypeNull}, nil
	}
	b, err := bsonv1.Marshal(bsonv1.D{{Key: "v", Value: v}})
	if err != nil {
		return bson.RawValue{}, err
	}
	return bson.Raw(b).Lookup("v"), nil
}
