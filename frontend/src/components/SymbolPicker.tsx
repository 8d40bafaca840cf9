import { type KeyboardEvent, useId, useMemo, useState } from "react";
import { useAppServices, useMarket } from "../appServices";

/** A searchable symbol list (an ARIA combobox): type to filter, arrows and Enter to pick. */
export function SymbolPicker() {
  const { market } = useAppServices();
  const symbols = useMarket((state) => state.symbols);
  const symbol = useMarket((state) => state.symbol);
  const loading = useMarket((state) => state.symbolsState === "loading");
  const [query, setQuery] = useState("");
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const listId = useId();

  const matches = useMemo(() => {
    const needle = query.trim().toUpperCase();
    return symbols.filter(
      (entry) => needle === "" || entry.symbol.includes(needle) || entry.exchange.toUpperCase().includes(needle),
    );
  }, [symbols, query]);

  function pick(name: string) {
    market.getState().selectSymbol(name);
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
        pick(choice.symbol);
      }
    } else if (event.key === "Escape") {
      setOpen(false);
      setQuery("");
    }
  }

  const activeId = open && matches[active] ? `${listId}-${active}` : undefined;
  return (
    <div className="symbol-picker">
      <input
        type="search"
        role="combobox"
        aria-label="Symbol"
        aria-expanded={open}
        aria-controls={listId}
        aria-autocomplete="list"
        aria-activedescendant={activeId}
        placeholder={loading ? "Loading symbols…" : (symbol ?? "Search symbols")}
        value={open ? query : (symbol ?? "")}
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
        <ul id={listId} role="listbox" className="symbol-list" aria-label="Symbols">
          {matches.length === 0 && <li className="muted empty">No symbol matches “{query}”</li>}
          {matches.map((entry, index) => (
            <li
              key={`${entry.exchange}:${entry.symbol}`}
              id={`${listId}-${index}`}
              role="option"
              aria-selected={entry.symbol === symbol}
              className={index === active ? "active" : undefined}
              onMouseDown={(event) => event.preventDefault()}
              onClick={() => pick(entry.symbol)}
            >
              <strong>{entry.symbol}</strong>
              <span className="muted small">
                {entry.exchange} · {entry.asset_type}
              </span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
