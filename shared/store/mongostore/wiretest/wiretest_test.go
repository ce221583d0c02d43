package wiretest_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store/mongostore/wiretest"
)

func TestStartAndStop(t *testing.T) {
	wiretest.Run(t, func(t *testing.T, s *wiretest.Server) {
		require.True(t, strings.HasPrefix(s.URI, "mongodb://127.0.0.1:"), s.URI)
		require.NotEmpty(t, s.Version)
		t.Logf("%s %s answered %s after exec", s.Kind, s.Version, s.Started)
		client := s.Client(t)
		coll := client.Database("wiretest").Collection("c")
		_, err := coll.InsertOne(t.Context(), bson.D{{Key: "_id", Value: 1}})
		require.NoError(t, err)
		n, err := coll.CountDocuments(t.Context(), bson.D{})
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})
}
