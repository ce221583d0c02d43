// Package browsertest drives the web view (admin/ui) in a real browser,
// headless Chromium through the DevTools protocol (chromedp), on the whole
// pipeline in one process (scripts/pipeline): what an operator sees and
// clicks, checked against the store. Without a browser on the machine its
// test skips and says so; CI installs Debian's chromium (.ci/run).
package browsertest
