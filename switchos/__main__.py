from switchos.cli import main

main()
