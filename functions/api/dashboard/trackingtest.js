// "Test tracking" on a delivery's overview: POST /api/deliveries/{id}/tracking/test and its pass/fail table.

import { api } from "./api.js";
import { failure, h, table } from "./dom.js";

export function trackingTestPanel(deliveryId) {
  const button = h("button", { type: "button", id: "test-tracking" }, "Test tracking");
  const result = h("div", { class: "tracking-test", "aria-live": "polite" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.replaceChildren(h("p", { class: "muted" }, "Following every tracked link and the pixel of a proof, then running the tracking workflow…"));
    try {
      const answer = await api.testTracking(deliveryId);
      const verdict = answer.passed ? "Every tracked link and the pixel passed." : "Some links failed: see below.";
      result.replaceChildren(
        h("p", { class: answer.passed ? "notice" : "error" }, `${verdict} Test recipient: ${answer.recipient_id}.`),
        table(
          [{ title: "Link" }, { title: "Result" }, { title: "Detail" }],
          answer.links.map((link) => [link.url_id ?? "pixel", link.passed ? "PASS" : "FAIL", link.detail]),
        ),
      );
    } catch (error) {
      result.replaceChildren(failure(error));
    } finally {
      button.disabled = false;
    }
  });
  return h(
    "section",
    { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", {}, "Test tracking"), button),
    h("p", { class: "muted small" }, "Renders a proof for a test recipient, follows its links and pixel, runs the workflow and checks each event is logged. Proof events are never counted."),
    result,
  );
}
