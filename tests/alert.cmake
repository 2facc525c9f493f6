# Webhook alerts: the records (node/records/alertrec: URLs, event lists, alert/ and alertstate/
# records, the sender rule, event ids) and delivery's backoff; the record decoders fuzzed; and
# the integration test alerts_webhook is in integration/integration.cmake.
popmesh_unit_test(test_alertrec popmesh_alert popmesh_records)
popmesh_fuzz(fuzz_alertrec popmesh_records)
# Delivery against a local HTTP server: sent on 2xx, retries bounded, the queue's bound, a
# hanging receiver does not hold up stopping.
popmesh_unit_test(test_alertpost popmesh_alert)
