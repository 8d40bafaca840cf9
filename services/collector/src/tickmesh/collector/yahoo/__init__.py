"""Yahoo Finance source: 1m bars polled through yfinance, published as source bars."""
