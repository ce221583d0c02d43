package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/consumer"
	"github.com/retrigger/retrigger/shared/event"
	"github.com/retrigger/retrigger/shared/messaging"
)

// Components start in any order: the consumers and the archiver create the
// streams (and their consumers) when they come first, and the producer
// applies its settings when it follows. Events inserted before anything
// runs, and after everything does, all end where they should: run once,
// or archived.
func TestEveryStartOrder(t *testing.T) {
	t.Parallel()
	orders := [][]string{
		{"producer", "consumer", "archiver"},
		{"producer", "archiver", "consumer"},
		{"consumer", "producer", "archiver"},
		{"consumer", "archiver", "producer"},
		{"archiver", "producer", "consumer"},
		{"archiver", "consumer", "producer"},
	}
	for _, order := range orders {
		t.Run(strings.Join(order, "_then_"), func(t *testing.T) {
			t.Parallel()
			rec := newRecorder(nil)
			o := Options{Memory: true, Replicas: -1}
			o.Worker.Handlers = map[string]consumer.Handler{
				"job":  rec.handle,
				"doom": func(context.Context, *consumer.Event) error { return consumer.Permanent(errors.New("doomed")) },
			}
			o.Worker.Policies = fastPolicy(3)
			o.Producer.Streams.DuplicateWindow = time.Minute // not the default a consumer creates the streams with
			p, err := Open(context.Background(), o)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, p.Close()) })
			b := &bundle{Pipeline: p, rec: rec}

			early := []bson.ObjectID{b.insertJob(t), b.insert(t, bson.E{Key: "type", Value: "doom"})}
			js, err := jetstream.New(p.Conn)
			require.NoError(t, err)
			names := messaging.DefaultNames()
			// up waits until a component that runs in the background made
			// its durable consumer, and so the stream, before the next
			// one starts.
			up := func(stream, durable string) {
				waitFor(t, 10*time.Second, "consumer "+durable, func() bool {
					_, err := js.Consumer(t.Context(), stream, durable)
					return err == nil
				})
			}
			for _, c := range order {
				switch c {
				case "producer":
					require.NoError(t, p.StartProducer())
				case "consumer":
					require.NoError(t, p.StartWorker())
					up(names.EventsStream(), names.WorkersConsumer("job"))
				case "archiver":
					require.NoError(t, p.StartArchiver())
					up(names.DLQStream(), names.ArchiverConsumer())
				}
			}
			late := []bson.ObjectID{b.insertJob(t), b.insert(t, bson.E{Key: "type", Value: "doom"})}
			for _, ids := range [][]bson.ObjectID{early, late} {
				b.waitState(t, ids[0], event.StateSuccess, 0)
				require.Len(t, rec.callTimes(ids[0].Hex()), 1, "run once")
				doc := b.waitArchived(t, ids[1])
				reason, _ := doc.Lookup(event.FieldRetrigger, "reason").StringValueOK()
				require.Equal(t, string(event.ReasonPermanent), reason)
			}
			for _, name := range []string{names.EventsStream(), names.DLQStream()} {
				s, err := js.Stream(t.Context(), name)
				require.NoError(t, err)
				require.Equal(t, time.Minute, s.CachedInfo().Config.Duplicates, "the producer's settings apply to %s, whoever created it", name)
			}
		})
	}
}
