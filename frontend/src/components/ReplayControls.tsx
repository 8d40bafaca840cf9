import { useAppServices, useMarket } from "../appServices";
import {
  inputValue,
  isReplaySpeed,
  normaliseTime,
  REPLAY_SPEEDS,
  speedLabel,
} from "../replay/replayRange";

const PHASE_TEXT = {
  idle: "Ready",
  connecting: "Starting…",
  playing: "Playing",
  paused: "Paused",
  ended: "Ended",
  failed: "Stopped",
} as const;

/** A minute-precision UTC time input; `onTime` gets only times that parse. */
function TimeField({ label, value, onTime }: { label: string; value: string; onTime: (time: string) => void }) {
  return (
    <label>
      {label} (UTC){" "}
      <input
        type="datetime-local"
        aria-label={`Replay ${label.toLowerCase()} (UTC)`}
        value={inputValue(value)}
        onChange={(event) => {
          const time = normaliseTime(event.target.value);
          if (time !== null) onTime(time);
        }}
      />
    </label>
  );
}

/** Live or replay; in replay, a past range (UTC), a speed, play and pause. */
export function ReplayControls() {
  const { market } = useAppServices();
  const mode = useMarket((state) => state.mode);
  const range = useMarket((state) => state.replay);
  const paused = useMarket((state) => state.replayPaused);
  const status = useMarket((state) => state.replayStatus);
  const problem = useMarket((state) => state.replayProblem);
  const store = market.getState;
  const running = mode === "replay" && (status.phase === "playing" || status.phase === "paused");
  const position = status.position === null ? "" : status.position.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, " UTC");

  return (
    <div className="replay-controls" data-testid="replay-controls" data-mode={mode} data-phase={status.phase}>
      <div className="segmented" role="group" aria-label="Mode">
        <button type="button" aria-pressed={mode === "live"} onClick={() => store().leaveReplay()}>
          Live
        </button>
        <button type="button" aria-pressed={mode === "replay"} onClick={() => store().playReplay()}>
          Replay
        </button>
      </div>
      <TimeField label="From" value={range.from} onTime={(from) => store().setReplayRange({ from })} />
      <TimeField label="To" value={range.to} onTime={(to) => store().setReplayRange({ to })} />
      <label>
        Speed{" "}
        <select
          aria-label="Replay speed"
          value={range.speed}
          onChange={(event) => {
            if (isReplaySpeed(event.target.value)) store().setReplayRange({ speed: event.target.value });
          }}
        >
          {REPLAY_SPEEDS.map((speed) => (
            <option key={speed} value={speed}>
              {speedLabel(speed)}
            </option>
          ))}
        </select>
      </label>
      {running ? (
        <button type="button" onClick={() => store().setReplayPaused(!paused)}>
          {paused ? "Resume" : "Pause"}
        </button>
      ) : (
        <button type="button" onClick={() => store().playReplay()}>
          Play
        </button>
      )}
      {mode === "replay" && (
        <span className="muted small" role="status" data-testid="replay-status" data-position={status.position ?? ""}>
          {PHASE_TEXT[status.phase]}
          {position !== "" ? ` · ${position}` : ""}
        </span>
      )}
      {problem !== null && (
        <span className="small replay-problem" role="alert">
          {problem}
        </span>
      )}
    </div>
  );
}
