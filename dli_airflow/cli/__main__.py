from dli_airflow.cli import main

main()
