CREATE TABLE IF NOT EXISTS daily_clicks (click_date DATE, campaign VARCHAR, clicks BIGINT, users BIGINT);
CREATE OR REPLACE TABLE campaign_report AS
SELECT campaign, sum(clicks) AS total_clicks, max(click_date) AS last_day
FROM daily_clicks
WHERE click_date <= {{ execution_date }}
GROUP BY campaign;
SELECT * FROM campaign_report ORDER BY campaign;
