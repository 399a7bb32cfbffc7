-- Listings show no part of a key's secret beginning any more: only its last four characters
-- (`…3fQz`). Keys issued before have no hint (their stored prefix was the key's beginning).
ALTER TABLE api_keys RENAME COLUMN prefix TO hint;
UPDATE api_keys SET hint = '';
