-- The example makes its own raw data for the day it runs; a real dataset reads its source tables.
CREATE TABLE IF NOT EXISTS raw_clicks (click_date DATE, campaign VARCHAR, user_id INTEGER);
INSERT INTO raw_clicks
SELECT {{ execution_date }}, 'campaign_' || (i % 3), i % 17
FROM range(60) AS t(i)
WHERE NOT EXISTS (SELECT 1 FROM raw_clicks WHERE click_date = {{ execution_date }});

CREATE TABLE IF NOT EXISTS daily_clicks (click_date DATE, campaign VARCHAR, clicks BIGINT, users BIGINT);
DELETE FROM daily_clicks WHERE click_date = {{ execution_date }};
INSERT INTO daily_clicks
SELECT click_date, campaign, count(*) AS clicks, count(DISTINCT user_id) AS users
FROM raw_clicks
WHERE click_date = {{ execution_date }}
{%- if campaign %}
  AND campaign = {{ campaign }}
{%- endif %}
GROUP BY click_date, campaign
HAVING count(*) >= {{ min_clicks }};

SELECT click_date, campaign, clicks, users
FROM daily_clicks
WHERE click_date = {{ execution_date }}
ORDER BY campaign;
