import { type KeyboardEvent, useId, useMemo, useState } from "react";
import type { SymbolInfo } from "../api/types";
import { useAppServices, useMarket } from "../appServices";
import { instrumentLabel, venueName } from "../market/venues";

/** True when `entry` matches what was typed: its symbol, venue label or venue name. */
export function matchesQuery(entry: SymbolInfo, query: string): boolean {
  const needle = query.trim().toUpperCase();
  if (needle === "") return true;
  return [entry.symbol, entry.exchange, venueName(entry.exchange), entry.instrument].some((text) =>
    text.toUpperCase().includes(needle),
  );
}

/**
 * A searchable instrument list (an ARIA combobox): type to filter, arrows and Enter to pick.
 * Each entry names its venue ("BTCUSDT · Binance USD-M"): the same symbol on two venues is
 * two instruments.
 */
export function SymbolPicker() {
  const { market } = useAppServices();
  const symbols = useMarket((state) => state.symbols);
  const instrument = useMarket((state) => state.instrument);
  const loading = useMarket((state) => state.symbolsState === "loading");
  const [query, setQuery] = useState("");
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const listId = useId();

  const matches = useMemo(() => symbols.filter((entry) => matchesQuery(entry, query)), [symbols, query]);

  function pick(name: string) {
    market.getState().selectInstrument(name);
    setQuery("");
    setOpen(false);
  }

  function onKeyDown(event: KeyboardEvent<HTMLInputElement>) {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      setOpen(true);
      setActive((index) => Math.min(index + 1, matches.length - 1));
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      setActive((index) => Math.max(index - 1, 0));
    } else if (event.key === "Enter") {
      const choice = matches[active];
      if (open && choice !== undefined) {
        event.preventDefault();
        pick(choice.instrument);
      }
    } else if (event.key === "Escape") {
      setOpen(false);
      setQuery("");
    }
  }

  const activeId = open && matches[active] ? `${listId}-${active}` : undefined;
  const chosen = instrument === null ? null : instrumentLabel(instrument);
  return (
    <div className="symbol-picker">
      <input
        type="search"
        role="combobox"
        aria-label="Instrument"
        aria-expanded={open}
        aria-controls={listId}
        aria-autocomplete="list"
        aria-activedescendant={activeId}
        placeholder={loading ? "Loading instruments…" : (chosen ?? "Search instruments")}
        value={open ? query : (chosen ?? "")}
        data-instrument={instrument ?? ""}
        onFocus={() => {
          setOpen(true);
          setActive(0);
        }}
        onBlur={() => setTimeout(() => setOpen(false), 120)}
        onChange={(event) => {
          setQuery(event.target.value);
          setActive(0);
          setOpen(true);
        }}
        onKeyDown={onKeyDown}
      />
      {open && (
        <ul id={listId} role="listbox" className="symbol-list" aria-label="Instruments">
          {matches.length === 0 && <li className="muted empty">No instrument matches “{query}”</li>}
          {matches.map((entry, index) => (
            <li
              key={entry.instrument}
              id={`${listId}-${index}`}
              role="option"
              aria-selected={entry.instrument === instrument}
              data-instrument={entry.instrument}
              className={index === active ? "active" : undefined}
              onMouseDown={(event) => event.preventDefault()}
              onClick={() => pick(entry.instrument)}
            >
              <span>
                <strong>{entry.symbol}</strong> · {venueName(entry.exchange)}
              </span>
              <span className="muted small">{entry.asset_type}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
