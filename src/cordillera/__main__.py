from cordillera.cli import main

main()
