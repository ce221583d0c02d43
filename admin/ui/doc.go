// Package ui is retrigger's web view: an overview of a deployment (counts
// by state and type, successes, failures and archives per minute over the
// last hour, the streams' depth and the workers' lag, types no replica
// handles, the oldest due event), lists of events and archived events with
// filters and keyset paging, each event with its payload, fields and
// timeline, and the operator's actions (retry, cancel, redrive, purge),
// each behind a confirmation that shows how many events it selects.
//
// It is server-rendered with html/template from templates and assets
// embedded in the binary; every page that reads works without JavaScript,
// and the little script there is (static/ui.js) only shows times in the
// reader's zone. It runs on the admin package's operations (Backend), so
// the retrigger command (`retrigger ui`) and the local run serve the same
// pages.
//
// Safety: read-only unless Config.AllowWrites; writes are POSTs checked
// for a per-session token (a signed double-submit cookie) and for a
// same-origin request (Origin, Sec-Fetch-Site); an optional basic-auth
// file; every payload and error is escaped by html/template's contexts.
package ui
