package embedded_test

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/retrigger/retrigger/shared/store"
	"github.com/retrigger/retrigger/shared/store/embedded"
)

func Example() {
	ctx := context.Background()
	db, err := embedded.Open(ctx, embedded.Options{}) // in memory
	if err != nil {
		panic(err)
	}
	defer db.Close(ctx)
	events := db.Collection("events")

	stream, err := events.Watch(ctx, store.WatchOptions{
		Match: bson.D{{Key: "operationType", Value: store.OpUpdate}},
	})
	if err != nil {
		panic(err)
	}
	defer stream.Close(ctx)

	// an event as an application inserts it: no state, no version
	if err := events.InsertOne(ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "type", Value: "email"}}); err != nil {
		panic(err)
	}
	// a conditional transition from "new"
	doc, err := events.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: "e1"}, {Key: "version", Value: bson.D{{Key: "$in", Value: bson.A{0, nil}}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "state", Value: 1}}}, {Key: "$inc", Value: bson.D{{Key: "version", Value: 1}}}})
	if err != nil {
		panic(err)
	}
	fmt.Println("after the update:", doc)

	change, err := stream.Next(ctx) // the insert does not match
	if err != nil {
		panic(err)
	}
	fmt.Println(change.Op, change.ID.StringValue(), change.Doc.Lookup("state"))
	// Output:
	// after the update: {"_id": "e1","type": "email","state": {"$numberInt":"1"},"version": {"$numberInt":"1"}}
	// update e1 {"$numberInt":"1"}
}
