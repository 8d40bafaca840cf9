import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import type { SourceHealth } from "../api/types";
import { SourceBannerView } from "./SourceBanner";

function render(sources: SourceHealth[]): string {
  return renderToStaticMarkup(createElement(SourceBannerView, { sources }));
}

describe("the unreachable-venue banner", () => {
  it("shows nothing while every venue is reachable or idle", () => {
    expect(render([])).toBe("");
    expect(render([{ source: "binance_spot", state: "up" }, { source: "yahoo", state: "idle" }])).toBe("");
  });

  it("says plainly which venue cannot be reached and points to make demo", () => {
    const html = render([
      { source: "binance_spot", state: "unreachable", error: "ConnectError" },
      { source: "binance_usdm", state: "connecting" },
    ]);
    expect(html).toContain('role="alert"');
    expect(html).toContain(
      "Binance spot cannot be reached from this machine. Run `make demo` to use the offline simulator.",
    );
    expect(html).not.toContain("Binance USD-M");
  });
});
