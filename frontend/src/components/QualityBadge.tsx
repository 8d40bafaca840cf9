import { useId } from "react";
import { useMarket } from "../appServices";

function level(score: number): "good" | "fair" | "poor" {
  return score >= 0.9 ? "good" : score >= 0.7 ? "fair" : "poor";
}

/** The instrument's data-quality score; hover or focus lists the failed checks. */
export function QualityBadge() {
  const quality = useMarket((state) => state.quality);
  const state = useMarket((s) => s.qualityState);
  const tipId = useId();
  if (quality === null) {
    const text = state === "loading" ? "Quality…" : state === "error" ? "Quality unavailable" : "Quality pending";
    return (
      <span className="quality muted" data-testid="quality-badge" data-state={state}>
        {text}
      </span>
    );
  }
  const failed = quality.checks_failed;
  return (
    <span
      className={`quality ${level(quality.score)}`}
      data-testid="quality-badge"
      data-state="ready"
      tabIndex={0}
      aria-describedby={tipId}
    >
      Quality {(quality.score * 100).toFixed(0)}%
      <span role="tooltip" id={tipId} className="tooltip">
        {failed.length === 0 ? (
          <>All {quality.checks_passed.length} checks passed</>
        ) : (
          <>
            Failed: {failed.join(", ")}
            {quality.anomalies.length > 0 && (
              <ul>
                {quality.anomalies.slice(0, 5).map((anomaly, index) => (
                  <li key={index}>
                    {anomaly.check}: {anomaly.detail}
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
      </span>
    </span>
  );
}
