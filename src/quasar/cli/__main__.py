from quasar.cli.main import main

main()
