package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/bsonkit"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/retrigger/retrigger/shared/filelock"
)

// writeLungoFile writes a data file the way this backend did before: lungo
// v0.4.0's engine on its file store, with documents, an index, an update,
// a delete and the oplog they made.
func writeLungoFile(t *testing.T, path string) {
	t.Helper()
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, lungo.Options{Store: lungo.NewFileStore(path, 0o600)})
	require.NoError(t, err)
	coll := client.Database("retrigger").Collection("events")
	_, err = coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "email"}, {Key: "state", Value: int32(0)}},
		bson.D{{Key: "_id", Value: "e2"}, {Key: "type", Value: "email"}, {Key: "state", Value: int32(2)}},
		bson.D{{Key: "_id", Value: "e3"}, {Key: "type", Value: "sms"}},
	})
	require.NoError(t, err)
	_, err = coll.Indexes().CreateOne(ctx, lungoIndex("type_state", bson.D{{Key: "type", Value: 1}, {Key: "state", Value: 1}}, false))
	require.NoError(t, err)
	_, err = coll.UpdateOne(ctx, bson.M{"_id": "e1"}, bson.M{"$set": bson.M{"state": int32(1)}})
	require.NoError(t, err)
	_, err = coll.DeleteOne(ctx, bson.M{"_id": "e3"})
	require.NoError(t, err)
	_, err = client.Database("Retries").Collection("Error").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(7)}})
	require.NoError(t, err)
	engine.Close()
}

func TestOpenConvertsLungoFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retrigger.db")
	writeLungoFile(t, path)
	old, err := os.ReadFile(path)
	require.NoError(t, err)

	e, rec := openT(t, testOptions(path))
	require.Contains(t, rec.Migrated, "lungo v0.4.0")
	require.Contains(t, rec.Migrated, "format 0")
	require.Contains(t, rec.String(), "converted from lungo v0.4.0's single-document file (format 0) to format 1: 3 documents")
	events := NS{"retrigger", "events"}
	v, _, err := e.Current()
	require.NoError(t, err)
	docs, err := v.Find(events, nil, nil, 0, 0)
	require.NoError(t, err)
	require.Len(t, docs, 2)
	require.Equal(t, "e1", bsonkit.Get(docs[0], "_id"))
	require.Equal(t, int32(1), bsonkit.Get(docs[0], "state"))
	require.Equal(t, 1, v.Len(NS{"Retries", "Error"}), "the other database too")
	require.Equal(t, []string{"type_state"}, specNames(v.Indexes(events)))
	// the history came along: its entries, in order, resume tokens intact
	var ops []string
	for _, entry := range v.Oplog() {
		ops = append(ops, bsonkit.Get(entry, "operationType").(string))
	}
	require.Equal(t, []string{"insert", "insert", "insert", "update", "delete", "insert"}, ops)
	// the file is in the new format now
	now, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, snapshotMagic, string(now[:8]))
	require.NotEqual(t, old, now)

	want := dump(t, e)
	require.NoError(t, e.Close())
	e, rec = openT(t, testOptions(path))
	require.Empty(t, rec.Migrated)
	require.Equal(t, want, dump(t, e))
}

func lungoIndex(name string, keys bson.D, unique bool) mongo.IndexModel {
	return mongo.IndexModel{Keys: keys, Options: options.Index().SetName(name).SetUnique(unique)}
}

func specNames(specs []IndexSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}

func TestOpenRefusesWhatItCannotRead(t *testing.T) {
	newer := func(t *testing.T, path string) {
		b := fileHeader{magic: snapshotMagic, version: formatVersion + 1, gen: 1, salt: 1}.encode()
		require.NoError(t, os.WriteFile(path, b, 0o600))
	}
	tests := []struct {
		name  string
		write func(t *testing.T, path string)
		want  string
	}{
		{"a newer snapshot", newer, "is format version 2; this build reads version 1 only"},
		{"a newer journal", func(t *testing.T, path string) {
			e, _, err := Open(testOptions(path))
			require.NoError(t, err)
			require.NoError(t, e.Close())
			b := fileHeader{magic: journalMagic, version: formatVersion + 1, gen: 2, salt: 1}.encode()
			require.NoError(t, os.WriteFile(journalPath(path, 2), b, 0o600))
		}, "is format version 2; this build reads version 1 only"},
		{"not a data file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("hello, world\n"), 0o600))
		}, `is not a retrigger data file (it starts with "hello, w")`},
		{"an empty file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, nil, 0o600))
		}, "is not a retrigger data file"},
		{"a BSON document of something else", func(t *testing.T, path string) {
			b, err := bson.Marshal(bson.D{{Key: "hello", Value: "world"}})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, b, 0o600))
		}, "but not lungo v0.4.0's single-document file (format 0)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "retrigger.db")
			tt.write(t, path)
			before, _ := os.ReadFile(path)
			_, _, err := Open(testOptions(path))
			require.ErrorIs(t, err, ErrFormat)
			require.Contains(t, err.Error(), tt.want)
			after, _ := os.ReadFile(path)
			require.Equal(t, before, after, "never emptied")
		})
	}
}

func TestOpenRefusesADamagedSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retrigger.db")
	e, _ := openT(t, testOptions(path))
	insert(t, e, nsA, d("_id", 1), d("_id", 2))
	require.NoError(t, e.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data[:len(data)-5], 0o600))
	_, _, err = Open(testOptions(path))
	require.ErrorContains(t, err, "the snapshot is damaged")

	// and a header whose checksum does not match
	data[20] ^= 1
	require.NoError(t, os.WriteFile(path, data, 0o600))
	_, _, err = Open(testOptions(path))
	require.ErrorContains(t, err, "the header's checksum does not match")
	require.NotEqual(t, crc32.Checksum(data[:28], castagnoli), binary.LittleEndian.Uint32(data[28:]))
}

func TestSecondOpenNamesTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retrigger.db")
	e, _ := openT(t, testOptions(path))
	_, _, err := Open(testOptions(path))
	require.ErrorIs(t, err, filelock.ErrLocked)
	require.Contains(t, err.Error(), "the data file "+path+" is in use by another process")
	require.Contains(t, err.Error(), fmt.Sprintf("pid %d", os.Getpid()))
	require.NoError(t, e.Close())
	e, _ = openT(t, testOptions(path))
	require.NoError(t, e.Close())
}
