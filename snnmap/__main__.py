from snnmap.cli import main

main()
